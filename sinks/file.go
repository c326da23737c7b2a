package sinks

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/dlflow/dlflow/pipeline"
)

// FileSink is the file.sink stage: it writes the download into PATH.tmp and
// renames it to PATH once the whole run succeeded. Its guarantees:
//
//   - PATH appears only by an atomic rename of PATH.tmp, after PATH.tmp was
//     checked complete and fsynced (with fsync: true, the default).
//   - One download at a time per output. From Resume until Commit (or
//     Finish after a failure) the sink holds an exclusive lock on PATH.tmp
//     (flock; LockFileEx on Windows; none where neither exists, such as
//     AIX and WASI), taken without waiting. A second
//     download of the same output, in this process or another, fails with
//     a *BusyError (ErrBusy) and changes nothing: it removes, truncates,
//     renames and writes nothing. The lock is taken before deciding whether
//     PATH.tmp is stale, and starting over truncates that same locked file
//     rather than making a new one, so the lock always guards the file at
//     PATH.tmp (see Resume).
//   - PATH.tmp is renamed only while it is still the file this run wrote
//     (same device and inode as the sink's descriptor); otherwise Commit
//     fails and renames nothing. Cleanups after a failure go through the
//     descriptor (truncate), and save or remove a state only while PATH.tmp
//     is still that file.
//   - On any failure nothing is created at PATH, and PATH.tmp is kept with
//     the bytes received so far (in sequential mode it is truncated to them,
//     so it is an exact prefix of the resource); a PATH.tmp that this run
//     made, or emptied to start over, and then wrote nothing into is
//     removed, with its state. A resumed PATH.tmp is always kept, unless
//     its bytes failed verification.
//   - An existing PATH is never replaced without Overwrite, even one that
//     appears while the download runs (rename with RENAME_NOREPLACE on
//     Linux, link and remove on other Unix systems, MoveFileEx without
//     MOVEFILE_REPLACE_EXISTING on Windows).
//   - Nor is a PATH.tmp that dlflow did not leave: one that holds bytes
//     and has no state beside it (see checkOurs) refuses the run with a
//     *ForeignTmpError, and only Overwrite empties it. A PATH.tmp that a
//     failed run keeps always has its state, one of no ranges when the
//     run could not be resumed.
//   - Only regular files are opened, replaced or removed: a symlink at
//     PATH.tmp is never followed, and a symlink, FIFO, device or directory
//     at PATH.tmp or its state refuses the run; opening never blocks (a
//     FIFO would block open(2)).
//   - With Resume (the default), PATH.tmp.state (mode 0600) records which
//     bytes of PATH.tmp are on disk, for which version of the resource and
//     for which URL (see state.go). It holds no secret: the URL asked for
//     is kept without userinfo and query, to read, and as a SHA-256, to
//     compare. A rerun continues from there when its probe finds the same
//     size and validators and the same URL, or, for another URL, when the
//     ETag names the content or a checksum will verify it; it sets
//     env.Have, so the other stages fetch only what is missing. A state
//     holds at most maxStateRanges ranges of at least minStateRange bytes
//     (besides the prefix), so a resume hands out a bounded number of
//     requests. The state is written from a checkpoint goroutine every
//     checkpointBytes or checkpointEvery, and by Finish after a failure,
//     each time after fdatasync of PATH.tmp. It is removed once PATH exists.
//   - A run that fails with pipeline.ErrCorrupt (a checksum mismatch)
//     removes PATH.tmp and its state: those bytes must not be resumed.
//
// After a successful Finish PATH.tmp stays open and locked until Commit.
// If the runner never calls Commit (another stage's Finish failed), it
// stays so until the next Resume of the sink or the process ends.
//
// A replica writes one of two ways (see write.go). Through the page cache,
// with the kernel's writeback started every few MiB and waited for from
// goroutines of the replica's own, never on the write path, and at most
// writebackAhead bytes ahead of it. Or, on Linux with direct I/O (see
// direct.go), past the page cache: each write takes the chunks already
// queued, up to Gather bytes, into one pwritev of their aligned blocks,
// and up to Writes of them are in flight at once (see inflight.go); the
// graph's memory bound counts the chunks they hold. direct: always and
// never force a way; auto measures both during the run and keeps the one
// that would finish sooner (see choose.go). Neither way changes what the
// sink claims: a write counts once it completed, in sequential mode only
// as part of the prefix, and the state only what an fdatasync covered.
// Elsewhere than on Linux the sink goes without direct I/O, preallocation
// and writeback hints (see sys_other.go).
//
// In sequential mode the sink takes ordered bytes and writes them as one
// stream, so it must run with one worker. In positional mode it takes bytes in
// any order and writes each chunk at its offset; any number of workers may
// share one file.
type FileSink struct {
	path, tmp   string
	positional  bool
	overwrite   bool
	fsync       bool
	preallocate bool
	resume      bool
	verifies    bool   // a checksum verifies the run's result (see otherURL)
	directWay   string // DirectAuto, DirectAlways or DirectNever
	gather      int64  // bytes of queued chunks one direct write may take
	writes      int    // direct writes in flight at once, per replica
	inflight    int64  // chunk buffer bytes a replica may hold in direct writes

	// Set by Resume and Start, before any replica runs; read-only during Run.
	file   *os.File // PATH.tmp, open and locked from Resume to Commit or Finish
	fd     int
	direct *directFile // nil: every write goes through the page cache
	size   int64       // Resource.Size, or -1 when unknown
	state  *resumeState
	// state is nil when the resource cannot be resumed: nothing is recorded.
	fresh bool // PATH.tmp holds nothing of an earlier run: Resume made or emptied it

	written atomic.Int64 // bytes written by this run
	ready   bool         // Finish verified and synced the file; Commit may rename it
	// How many bytes went each way, and how often a replica changed way
	// (direct: auto), for tests and the log.
	directBytes, cachedBytes, switches atomic.Int64
	directWrites                       atomic.Int64 // direct write calls, for tests

	// mu guards have, next and ahead. have is every byte of PATH.tmp that
	// holds the resource: the present ranges of an earlier run and the
	// writes of this run that completed. Writes in flight, positional
	// replicas and the checkpoint goroutine use it concurrently. In
	// sequential mode have is the prefix [0, next), and ahead holds the
	// writes that completed beyond a write still in flight (see wrote).
	mu    sync.Mutex
	have  pipeline.RangeSet
	next  int64
	ahead []pipeline.Range

	ck *checkpointer // nil when state is nil or Start did not run
	// dirSynced: PATH.tmp's directory entry is durable, so a state file
	// can no longer outlive it in a crash. Used by one goroutine at a time
	// (the checkpointer, then Finish after it stopped).
	dirSynced bool
}

// The names of the files the sink keeps beside PATH: PATH.tmp, its state
// PATH.tmp.state, and PATH.tmp.state.new while the state is replaced.
const (
	tmpSuffix   = ".tmp"
	stateSuffix = ".state"
	newSuffix   = ".new"
)

// MaxSuffix is the length in bytes of the longest suffix the file sink
// appends to the output's base name, ".tmp.state.new" (the resume state
// while it is replaced). A file system limits a name to 255 bytes on the
// usual ones, so an output's base name may have at most 255 - MaxSuffix
// bytes; Preflight refuses a longer one. A caller that makes up names,
// such as from a server's Content-Disposition, should cut them to fit.
const MaxSuffix = len(tmpSuffix + stateSuffix + newSuffix)

func (s *FileSink) statePath() string { return s.tmp + stateSuffix }

// FileConfig configures a file.sink.
type FileConfig struct {
	Path        string            `koanf:"path" help:"file to write; filled from the top-level output (or -o) when unset"`
	Mode        string            `koanf:"mode" help:"sequential (ordered bytes, one stream) or positional (bytes at their offsets, any workers)"`
	Overwrite   bool              `koanf:"overwrite" help:"replace an existing output file instead of refusing to run"`
	Fsync       bool              `koanf:"fsync" help:"fsync the file and its directory before the output appears"`
	Preallocate bool              `koanf:"preallocate" help:"reserve the whole file up front when the size is known"`
	Resume      bool              `koanf:"resume" help:"continue a partial download from PATH.tmp and its state file when the server still has the same file; false starts over (--no-resume)"`
	Direct      string            `koanf:"direct" help:"auto, always or never: write aligned blocks with O_DIRECT, past the page cache (no copy, nothing left for the final fsync, but each write waits for the disk), or through the page cache, whose writeback is started and paced as the file is written. Which is faster depends on the disk and the machine: auto starts with the page cache (direct for chunks of gather bytes or more) and, when the way it writes holds the download up, measures the other and keeps the one that would finish sooner. Unaligned edges, and file systems without direct I/O, always use the page cache"`
	Gather      pipeline.ByteSize `koanf:"gather" help:"a direct write takes the chunks already queued, up to this many bytes, with one call, so that small network chunks make fewer, larger direct writes"`
	Writes      int               `koanf:"writes" help:"direct writes in flight at once (per worker; 0 is 1), each of up to gather bytes: while one waits for the disk the next is on its way. While one is in flight, the next waits for its chunks to fill gather bytes. The memory bound counts writes x gather, which is the sink's cushion against a slow disk too: its automatic queue is what 2 MiB leaves of it, at least 2 chunks"`

	// checksum is set when the run verifies a checksum (Settings.Checksum):
	// the result of a resume is then checked as a whole, so a partial
	// download of another URL may be resumed (see FileSink.otherURL).
	checksum bool
	// toWriter is set when the run's bytes go to a writer
	// (Settings.Writer), which a file sink does not take.
	toWriter bool
}

// The values of a file.sink's direct.
const (
	DirectAuto   = "auto"
	DirectAlways = "always"
	DirectNever  = "never"
)

// The modes of a file.sink.
const (
	ModeSequential = "sequential"
	ModePositional = "positional"
)

// ErrOutputExists is what a file sink's error wraps when the output is
// already there and Overwrite is off. Test for it with errors.Is.
var ErrOutputExists = errors.New("output exists")

// OutputExistsError names the output that is in the way; it wraps
// ErrOutputExists.
type OutputExistsError struct {
	Path string
}

func (e *OutputExistsError) Error() string {
	return fmt.Sprintf("output %s exists", e.Path)
}

func (e *OutputExistsError) Unwrap() error { return ErrOutputExists }

// ErrForeignTmp is what a file sink's error wraps when PATH.tmp holds
// bytes that are not a partial download of dlflow (it has no resume state
// beside it) and Overwrite is off: starting over would destroy them. Test
// for it with errors.Is.
var ErrForeignTmp = errors.New("not a partial download of dlflow")

// ForeignTmpError names the PATH.tmp in the way; it wraps ErrForeignTmp.
type ForeignTmpError struct {
	Path string
	Size int64
}

func (e *ForeignTmpError) Error() string {
	return fmt.Sprintf("%s exists (%d bytes) and is not a partial download of dlflow (no resume state beside it)", e.Path, e.Size)
}

func (e *ForeignTmpError) Unwrap() error { return ErrForeignTmp }

// ErrBusy is what a file sink's error wraps when another download, in
// this process or another, is writing the same output: it holds the lock
// on PATH.tmp. Test for it with errors.Is.
var ErrBusy = errors.New("output busy")

// BusyError names the partial download (PATH.tmp) that another download
// holds; it wraps ErrBusy. The run that gets it has changed nothing.
type BusyError struct {
	Path string
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("%s is in use by another download of the same output", e.Path)
}

func (e *BusyError) Unwrap() error { return ErrBusy }

var fileDef = pipeline.Def[FileConfig]{
	Type:     "file.sink",
	Summary:  "writes the download into OUTPUT.tmp and renames it to OUTPUT when complete",
	Consumes: pipeline.OrderedBytes,
	Produces: pipeline.None,
	Defaults: FileConfig{Mode: ModeSequential, Fsync: true, Preallocate: true, Resume: true, Direct: DirectAuto, Gather: 1 << 20, Writes: 3},
	Ports: func(c FileConfig) (pipeline.Flow, pipeline.Flow) {
		if c.Mode == ModePositional {
			return pipeline.Bytes, pipeline.None
		}
		return pipeline.OrderedBytes, pipeline.None
	},
	New: func(c FileConfig) (pipeline.Stage, error) {
		if c.Path == "" && c.toWriter {
			return nil, errors.New("writes a file, but this run's bytes go to a writer: use a topology whose sink is a stdout.sink, such as stdout.yaml")
		}
		if c.Path == "" {
			return nil, errors.New("path is required (set the top-level output)")
		}
		switch c.Mode {
		case ModeSequential, ModePositional, "":
		default:
			return nil, fmt.Errorf("mode must be %q or %q, got %q", ModeSequential, ModePositional, c.Mode)
		}
		switch c.Direct {
		case DirectAuto, DirectAlways, DirectNever, "":
		default:
			return nil, fmt.Errorf("direct must be %q, %q or %q, got %q", DirectAuto, DirectAlways, DirectNever, c.Direct)
		}
		if c.Gather < 0 {
			return nil, fmt.Errorf("gather must not be negative, got %v", c.Gather)
		}
		if c.Writes < 0 {
			return nil, fmt.Errorf("writes must not be negative, got %d", c.Writes)
		}
		path := filepath.Clean(c.Path)
		return &FileSink{
			path:        path,
			tmp:         path + tmpSuffix,
			positional:  c.Mode == ModePositional,
			overwrite:   c.Overwrite,
			fsync:       c.Fsync,
			preallocate: c.Preallocate,
			resume:      c.Resume,
			verifies:    c.checksum,
			directWay:   cmp.Or(c.Direct, DirectAuto),
			gather:      int64(c.Gather),
			writes:      c.Writes,
			inflight:    c.inflightBytes(),
		}, nil
	},
	Memory:   func(c FileConfig) pipeline.Memory { return pipeline.Memory{Gather: c.inflightBytes()} },
	AnyOrder: "set its config mode: positional",
	MaxWorkers: func(c FileConfig) (int, string) {
		if c.Mode == ModePositional {
			return 0, ""
		}
		return 1, "sequential mode writes one stream; set mode: positional to write in parallel"
	},
}

// TakeSettings fills an unset path from the run's output, and takes the
// run's overwrite, resume: false, and whether a checksum is set.
func (c *FileConfig) TakeSettings(s pipeline.Settings) {
	if c.Path == "" {
		c.Path = s.Output
	}
	c.Overwrite = c.Overwrite || s.Overwrite
	c.Resume = c.Resume && s.Resume
	c.checksum = s.Checksum != ""
	c.toWriter = s.Writer != nil
}

var (
	_ pipeline.SettingsTaker = (*FileConfig)(nil)
	_ pipeline.Preflighter   = (*FileSink)(nil)
	_ pipeline.Resumer       = (*FileSink)(nil)
	_ pipeline.Starter       = (*FileSink)(nil)
	_ pipeline.Finisher      = (*FileSink)(nil)
	_ pipeline.Committer     = (*FileSink)(nil)
)

func init() { builtin(fileDef) }

// inflightBytes is how many bytes of chunk buffers a replica may hold in
// direct writes: writes of up to gather bytes each. Page cache writes hold
// one chunk, only while it is copied.
func (c FileConfig) inflightBytes() int64 {
	if c.Direct == DirectNever {
		return 0
	}
	return int64(max(c.Writes, 1)) * int64(c.Gather)
}

// Path is the output the sink writes; Path()+".tmp" is the file it fills.
func (s *FileSink) Path() string { return s.path }

// Bytes is the number of bytes written to PATH.tmp in the current (or last)
// run.
func (s *FileSink) Bytes() int64 { return s.written.Load() }
