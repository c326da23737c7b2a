package pipeline

import "io"

// Settings are the run-wide settings a config holds at its top level (and
// the command line sets with -o, --overwrite, --no-resume, --checksum). A
// stage takes those it has a use for as its own defaults.
type Settings struct {
	// Output is the path the download ends up at.
	Output string
	// Overwrite allows replacing an existing output.
	Overwrite bool
	// Resume allows continuing what an earlier run left; false starts over.
	Resume bool
	// Checksum is the expected digest as algorithm:hex, or "".
	Checksum string
	// Writer, when set, is where a sink that streams the bytes (such as
	// stdout.sink) writes them instead of its default (standard output).
	// It comes from code, never from a config file, which cannot hold
	// one: dlflow.Request.Writer sets it, and the CLI's -o - sets that.
	// A stage that does not stream ignores it.
	Writer io.Writer
}

// SettingsTaker is implemented by a stage's config type (*C of its Def,
// the pointer Registry.NewConfig returns) to take the run-wide settings.
// The config loader calls TakeSettings after decoding the stage's own
// keys, so a key the stage sets itself should win over the setting where
// that makes sense (a file.sink's own path over Output), and a setting
// that only narrows should narrow (resume: false anywhere turns resuming
// off).
type SettingsTaker interface {
	TakeSettings(Settings)
}
