package dlflow

// Counts returns how many times downloads loaded their configuration and
// built a graph, since the process started: a test hook, not API.
func Counts() (loads, builds int64) {
	return counts.loads.Load(), counts.builds.Load()
}
