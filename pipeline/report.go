package pipeline

// What a stage can report about a run, for whoever runs the graph (the
// dlflow library, a progress display, a summary). Each is a small interface
// a stage value implements; callers find the stages that implement one
// with [Reporters], never by a stage's type or type name.
//
// Every method is safe to call at any time from any goroutine: before a run
// (zero values), during it, and after it (the last run's values).

// ProgressReporter is implemented by a stage that counts the bytes of the
// download as they pass (progress.tap).
type ProgressReporter interface {
	Progress() Progress
}

// Progress is how far a download is.
type Progress struct {
	// Done is the bytes of the resource in place: passed through in this
	// run plus Resumed.
	Done int64
	// Total is the size of the resource, -1 when unknown.
	Total int64
	// Resumed is the bytes an earlier run left that this run did not fetch
	// again (Env.Have at Start).
	Resumed int64
}

// ConnectionReporter is implemented by a stage whose replicas each hold a
// network connection (http.reader, http.source).
type ConnectionReporter interface {
	// ConnectionBytes returns the bytes each replica delivered in the
	// current or last run, indexed by replica; a replica that has not
	// started is 0 or missing.
	ConnectionBytes() []int64
}

// RetryReporter is implemented by a stage that retries failed requests.
type RetryReporter interface {
	// Retries is the number of retries taken in the current or last run,
	// over all replicas.
	Retries() int64
}

// Verifier is implemented by a stage that can verify the bytes of the
// download against a digest (hash.tap). A config's top-level checksum
// needs at least one Verifier in the graph.
type Verifier interface {
	Verification() Verification
}

// Verification is what a Verifier did in the current or last run.
type Verification struct {
	// Algorithm is the digest algorithm being checked ("sha256"), "" when
	// the stage had nothing to verify and passed the bytes through.
	Algorithm string
	// Digest is the verified digest in lowercase hex, "" unless Verified.
	Digest string
	// Verified is set once the digest of every byte matched.
	Verified bool
	// Source says where the expected digest came from: "checksum" (the
	// config) or "the server's digest".
	Source string
	// Pieces is how many of the resource's piece hashes (Resource.Pieces)
	// the stage verified; all of them once the run succeeded, when it
	// checks pieces at all.
	Pieces int
}

// PieceVerifier is implemented by a stage that verifies the resource's
// piece hashes (Resource.Pieces) on the bytes it passes, whatever the
// stages before it (hash.tap). A download with piece hashes needs one that
// sees the resource's bytes: no stage before it reshapes them
// (Def.Reshapes). A stage that fetches ranges and checks the pieces of
// some answers only (http.reader) is not one.
type PieceVerifier interface {
	Verifier
	// VerifiesPieces reports that the stage checks Resource.Pieces.
	VerifiesPieces() bool
}

// Reporters returns the stage values of g that implement T, in the order of
// [Graph.Stages]:
//
//	for _, p := range pipeline.Reporters[pipeline.ProgressReporter](g) { ... }
func Reporters[T any](g *Graph) []T {
	var out []T
	for _, n := range g.nodes {
		if r, ok := n.stage.(T); ok {
			out = append(out, r)
		}
	}
	return out
}
