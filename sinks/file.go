package sinks

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dlflow/dlflow/pipeline"
	"golang.org/x/sys/unix"
)

// FileSink is the file.sink stage: it writes the download into PATH.tmp and
// renames it to PATH once the whole run succeeded. Its guarantees:
//
//   - PATH appears only by an atomic rename of PATH.tmp, after PATH.tmp was
//     checked complete and fsynced (with fsync: true, the default).
//   - On any failure nothing is created at PATH, and PATH.tmp is kept with
//     the bytes received so far (in sequential mode it is truncated to them,
//     so it is an exact prefix of the resource).
//   - An existing PATH is never replaced without Overwrite, even one that
//     appears while the download runs (rename with RENAME_NOREPLACE).
//   - A symlink at PATH.tmp is never followed nor removed: the run is refused.
//   - With Resume (the default), PATH.tmp.state records which bytes of
//     PATH.tmp are on disk and for which version of the resource (see
//     state.go); a rerun whose probe finds the same size and validators
//     continues from there and sets env.Have, so the other stages fetch only
//     what is missing. The state is written from a checkpoint goroutine every
//     checkpointBytes or checkpointEvery, and by Finish after a failure,
//     each time after fdatasync of PATH.tmp. It is removed once PATH exists.
//   - A run that fails with pipeline.ErrCorrupt (a checksum mismatch)
//     removes PATH.tmp and its state: those bytes must not be resumed.
//
// With direct I/O (see FileConfig.Direct and direct.go) a replica writes
// the aligned blocks of large chunks past the page cache. With direct:
// always it also takes the chunks already queued behind the first, up to
// Gather bytes, into one pwritev, since a direct write waits for the disk
// and must be large to pay; the graph's memory bound counts those chunks.
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
	useDirect   bool
	directMin   int   // chunks of smaller buffers go through the page cache
	gather      int64 // with direct: always, bytes of queued chunks one write may take

	// Set by Start, before any replica runs; read-only during Run.
	file   *os.File
	fd     int
	direct *directFile // nil: every write goes through the page cache
	size   int64       // Resource.Size, or -1 when unknown
	state  *resumeState
	// state is nil when the resource cannot be resumed: nothing is recorded.

	written atomic.Int64 // bytes written by this run
	next    int64        // sequential mode: the offset the next chunk must start at
	ready   bool         // Finish verified and synced the file; Commit may rename it
	created bool         // Resume created PATH.tmp afresh (it resumed nothing)

	// mu guards have: every byte of PATH.tmp that holds the resource, the
	// present ranges of an earlier run and what this run wrote. Positional
	// replicas add to it concurrently with the checkpoint goroutine.
	mu   sync.Mutex
	have pipeline.RangeSet

	ck *checkpointer // nil when state is nil
}

// FileConfig configures a file.sink.
type FileConfig struct {
	Path        string            `koanf:"path" help:"file to write; filled from the top-level output (or -o) when unset"`
	Mode        string            `koanf:"mode" help:"sequential (ordered bytes, one stream) or positional (bytes at their offsets, any workers)"`
	Overwrite   bool              `koanf:"overwrite" help:"replace an existing output file instead of refusing to run"`
	Fsync       bool              `koanf:"fsync" help:"fsync the file and its directory before the output appears"`
	Preallocate bool              `koanf:"preallocate" help:"reserve the whole file up front when the size is known"`
	Resume      bool              `koanf:"resume" help:"continue a partial download from PATH.tmp and its state file when the server still has the same file; false starts over (--no-resume)"`
	Direct      string            `koanf:"direct" help:"auto, always or never: write aligned blocks with O_DIRECT, past the page cache, so that the final fsync has nothing left to flush, at a fraction of the CPU. Each direct write waits for the disk, which pays for large writes only: auto writes chunks of 512 KiB or more direct (a coalesce.buffer's, ranged.yaml's readers') and smaller ones through the page cache. Unaligned edges, and file systems without direct I/O, always use the page cache"`
	Gather      pipeline.ByteSize `koanf:"gather" help:"with direct: always, write the chunks already queued, up to this many bytes, with one call, so that small network chunks make fewer, larger direct writes"`
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
	return fmt.Sprintf("output %s exists; pass --overwrite to replace it", e.Path)
}

func (e *OutputExistsError) Unwrap() error { return ErrOutputExists }

// writebackEvery is how much newly written data makes the sink start its
// writeback (sync_file_range), so that the final fsync finds little left to
// flush.
const writebackEvery = 8 << 20

// A checkpoint (fdatasync, then the state file) is taken after every
// checkpointBytes written or every checkpointEvery, whichever comes first:
// a crash loses at most about that much work. The byte trigger is large
// because each fdatasync stalls the writer: at 16 MiB, a 1 GiB stream from
// nginx ran at 1249 MB/s against 1838 MB/s without checkpoints; on a slow
// link the one-second timer keeps the loss small anyway.
const (
	checkpointBytes = 256 << 20
	checkpointEvery = time.Second
)

var fileDef = pipeline.Def[FileConfig]{
	Type:     "file.sink",
	Summary:  "writes the download into OUTPUT.tmp and renames it to OUTPUT when complete",
	Consumes: pipeline.OrderedBytes,
	Produces: pipeline.None,
	Defaults: FileConfig{Mode: ModeSequential, Fsync: true, Preallocate: true, Resume: true, Direct: DirectAuto, Gather: 1 << 20},
	Ports: func(c FileConfig) (pipeline.Flow, pipeline.Flow) {
		if c.Mode == ModePositional {
			return pipeline.Bytes, pipeline.None
		}
		return pipeline.OrderedBytes, pipeline.None
	},
	New: func(c FileConfig) (pipeline.Stage, error) {
		if c.Path == "" {
			return nil, errors.New("path is required (set output: or -o)")
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
		path := filepath.Clean(c.Path)
		return &FileSink{
			path:        path,
			tmp:         path + ".tmp",
			positional:  c.Mode == ModePositional,
			overwrite:   c.Overwrite,
			fsync:       c.Fsync,
			preallocate: c.Preallocate,
			resume:      c.Resume,
			useDirect:   c.usesDirect(),
			directMin:   c.directMin(),
			gather:      c.gatherBytes(),
		}, nil
	},
	Memory:   func(c FileConfig) pipeline.Memory { return pipeline.Memory{Gather: c.gatherBytes()} },
	AnyOrder: "set its config mode: positional",
	MaxWorkers: func(c FileConfig) (int, string) {
		if c.Mode == ModePositional {
			return 0, ""
		}
		return 1, "sequential mode writes one stream; set mode: positional to write in parallel"
	},
}

// TakeSettings fills an unset path from the run's output, and takes the
// run's overwrite and resume: false.
func (c *FileConfig) TakeSettings(s pipeline.Settings) {
	if c.Path == "" {
		c.Path = s.Output
	}
	c.Overwrite = c.Overwrite || s.Overwrite
	c.Resume = c.Resume && s.Resume
}

var (
	_ pipeline.SettingsTaker = (*FileConfig)(nil)
	_ pipeline.Preflighter   = (*FileSink)(nil)
	_ pipeline.Resumer       = (*FileSink)(nil)
	_ pipeline.Starter       = (*FileSink)(nil)
	_ pipeline.Finisher      = (*FileSink)(nil)
	_ pipeline.Committer     = (*FileSink)(nil)
)

func init() { builtin(fileDef.Spec()) }

// autoDirectMin is the smallest buffer that direct: auto writes with
// O_DIRECT, with or without fsync. Measured on 1 GiB downloads from nginx
// on loopback, medians of 3-5 runs in one bench each (fsync on unless
// said):
//
//   - large writes pay: buffered.yaml's 16 MiB chunks ran at 1390-1484 MB/s
//     direct for 0.39-0.45 s of CPU, against 611-751 MB/s and 1.6-1.9 s
//     through the page cache; without fsync, 1391 against 665-751 MB/s;
//     ranged.yaml with 512 KiB reader buffers at 1103 MB/s direct (1 MiB:
//     1126-1324), where its 256 KiB chunks through the page cache ran at
//     483 to 2257 MB/s from one bench to the next, each with runs near
//     450 and near 2200: page-cache writes on the test VM alternate between
//     cheap and costly (2.5 s of CPU), direct ones do not;
//   - 256 KiB chunks do not, even gathered into 1 MiB writes: a direct
//     write waits for the disk, and positional ranged.yaml ran at 806
//     against 1506 MB/s, ranged-ordered.yaml at 1055-1291 against
//     1768-2054 (in a cheap phase of the page cache).
const autoDirectMin = 512 << 10

// usesDirect reports whether the sink opens PATH.tmp for direct I/O.
func (c FileConfig) usesDirect() bool {
	switch c.Direct {
	case DirectAlways:
		return true
	case DirectAuto, "":
		return true
	}
	return false
}

// directMin is the smallest chunk buffer written direct.
func (c FileConfig) directMin() int {
	if c.Direct == DirectAlways {
		return 0
	}
	return autoDirectMin
}

// gatherBytes is how much of the queue one direct write takes: only with
// direct: always, since auto writes only large chunks direct.
func (c FileConfig) gatherBytes() int64 {
	if c.Direct == DirectAlways {
		return int64(c.Gather)
	}
	return 0
}

// Path is the output the sink writes; Path()+".tmp" is the file it fills.
func (s *FileSink) Path() string { return s.path }

// Bytes is the number of bytes written to PATH.tmp in the current (or last)
// run.
func (s *FileSink) Bytes() int64 { return s.written.Load() }

// Preflight refuses a run that cannot end well, before any network I/O: the
// output's directory must exist and take a new file, the output must not
// exist (unless Overwrite) nor be a directory, and PATH.tmp must not be a
// symlink.
func (s *FileSink) Preflight(env *pipeline.Env) error {
	dir := filepath.Dir(s.path)
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("output directory %s is not a directory", dir)
	}
	if err := s.checkOutput(); err != nil {
		return err
	}
	// A real probe, not access(2): it also catches read-only mounts, ACLs,
	// quotas and full inode tables.
	probe, err := os.CreateTemp(dir, ".dlflow-probe-*")
	if err != nil {
		return fmt.Errorf("output directory %s is not writable: %w", dir, err)
	}
	name := probe.Name()
	cerr := probe.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("output directory %s: remove probe file: %w", dir, err)
	}
	if cerr != nil {
		return fmt.Errorf("output directory %s: %w", dir, cerr)
	}
	return nil
}

// checkOutput reports what is in the way at PATH and PATH.tmp.
func (s *FileSink) checkOutput() error {
	st, err := os.Lstat(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("output: %w", err)
	case st.IsDir():
		return fmt.Errorf("output %s is a directory; name a file", s.path)
	case st.Mode()&fs.ModeSymlink == 0 && !st.Mode().IsRegular():
		// A rename would replace a device or a pipe, such as /dev/null.
		return fmt.Errorf("output %s is not a regular file", s.path)
	case !s.overwrite:
		return &OutputExistsError{Path: s.path}
	}
	if st, err := os.Lstat(s.tmp); err == nil && st.Mode()&fs.ModeSymlink != 0 {
		return symlinkError(s.tmp)
	}
	return nil
}

func symlinkError(path string) error {
	return fmt.Errorf("%s is a symlink; refusing to follow it (remove it and run again)", path)
}

// Resume opens PATH.tmp and reports what it already holds. With Resume
// on, a PATH.tmp whose state file proves it holds bytes of the probed
// resource (same size and validators) is reopened as it is, and its ranges
// are reported (only the prefix in sequential mode, which writes one
// stream from there). Otherwise PATH.tmp is created afresh, exclusively; a
// stale one is removed first, after its state, and a log line says why.
// After a stage that reshapes the bytes (env.Reshaped) nothing is resumed
// and no state is kept: its offsets are not the resource's. On error
// nothing is left open.
func (s *FileSink) Resume(ctx context.Context, env *pipeline.Env) ([]pipeline.Range, io.ReaderAt, error) {
	s.file, s.fd, s.direct, s.next, s.ready, s.state, s.ck, s.created = nil, -1, nil, 0, false, nil, nil, false
	s.written.Store(0)
	s.have = pipeline.RangeSet{}
	s.size = -1
	res := env.Resource
	if res.SizeKnown() && !env.Reshaped {
		s.size = res.Size
	}
	if err := s.checkOutput(); err != nil {
		return nil, nil, err
	}
	notResumable := resumable(res)
	if env.Reshaped {
		notResumable = "a stage before the sink changes the bytes, so the partial file's offsets are not the server's"
	}
	if notResumable == "" {
		st := stateFor(res)
		s.state = &st
	}

	f, present, err := s.open(env, notResumable)
	if err != nil {
		return nil, nil, err
	}
	s.file, s.fd, s.created = f, int(f.Fd()), len(present) == 0
	if len(present) == 0 {
		return nil, nil, nil
	}
	for _, r := range present {
		s.have.Add(r)
	}
	s.next = s.have.PrefixEnd()
	return present, f, nil
}

// Start preallocates PATH.tmp when the size is known, opens it for direct
// I/O when configured, and starts the checkpoints of the resume state. On
// error the file is closed, and removed if Resume created it (it holds no
// data).
func (s *FileSink) Start(ctx context.Context, env *pipeline.Env) error {
	if s.file == nil {
		return errors.New("file sink: Start without a successful Resume")
	}
	if s.preallocate && s.size > 0 {
		// On a resumed file this only reserves what is still missing:
		// fallocate without flags never touches existing data.
		err := unix.Fallocate(s.fd, 0, 0, s.size)
		if err != nil && !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
			s.file.Close()
			s.file, s.fd = nil, -1
			if s.created {
				os.Remove(s.tmp)
			}
			return fmt.Errorf("preallocate %d bytes for %s: %w", s.size, s.tmp, err)
		}
	}
	if s.useDirect {
		d, err := openDirect(s.tmp)
		if err != nil {
			// Not fatal: the page cache is slower, not wrong.
			env.Log.Warn().Err(err).Str("path", s.tmp).Msg("cannot open for direct I/O; writing through the page cache")
		}
		s.direct = d
	}
	if s.state != nil {
		s.ck = startCheckpointer(s)
	}
	return nil
}

// open returns PATH.tmp ready to write and the ranges of it already
// present: a resumed partial download, or a new empty file.
func (s *FileSink) open(env *pipeline.Env, notResumable string) (*os.File, []pipeline.Range, error) {
	why, detail := "", ""
	switch {
	case !s.resume:
		why = "resume is off (resume: false or --no-resume); discarding the partial download and starting over"
	case notResumable != "":
		why, detail = "cannot resume this download; starting over", notResumable
	default:
		f, present, w, d, err := s.reopen(env)
		if err != nil || f != nil {
			return f, present, err
		}
		why, detail = w, d
	}
	// The old state goes first, and durably, so that a crash can never
	// leave it beside a new PATH.tmp whose bytes it does not describe.
	had, err := removeState(s.tmp + ".state")
	if err != nil {
		return nil, nil, fmt.Errorf("remove stale resume state: %w", err)
	}
	if had {
		if err := syncDir(filepath.Dir(s.tmp)); err != nil {
			return nil, nil, err
		}
	}
	f, err := s.create(env, why, detail)
	return f, nil, err
}

// reopen opens PATH.tmp for resuming when its state matches the resource.
// When it does not, it returns no file and why it starts over (why is ""
// when there is no PATH.tmp, which needs no explanation).
func (s *FileSink) reopen(env *pipeline.Env) (f *os.File, present []pipeline.Range, why, detail string, err error) {
	if _, err := os.Lstat(s.tmp); errors.Is(err, fs.ErrNotExist) {
		return nil, nil, "", "", nil
	}
	st, err := readState(s.tmp + ".state")
	switch {
	case errors.Is(err, errNoState):
		return nil, nil, "the partial download has no resume state beside it, so its bytes cannot be trusted; starting over", "", nil
	case err != nil:
		return nil, nil, "the resume state of the partial download is unreadable; starting over", err.Error(), nil
	}
	res := env.Resource
	if d := st.mismatch(res); d != "" {
		return nil, nil, "the file changed on the server since the partial download; starting over", d, nil
	}
	present, _ = st.ranges() // checked by readState
	if !s.positional {
		// One stream can only continue where the prefix ends; bytes after
		// a hole are fetched again.
		if len(present) > 0 && present[0].Start == 0 {
			present = present[:1]
		} else {
			present = nil
		}
	}
	if len(present) == 0 {
		return nil, nil, "the partial download has no bytes this sink can continue from; starting over", "", nil
	}
	f, err = os.OpenFile(s.tmp, os.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ELOOP):
		return nil, nil, "", "", symlinkError(s.tmp)
	case err != nil:
		return nil, nil, "", "", fmt.Errorf("reopen partial download: %w", err)
	}
	fi, err := f.Stat()
	switch {
	case err != nil:
		f.Close()
		return nil, nil, "", "", err
	case !fi.Mode().IsRegular():
		f.Close()
		return nil, nil, "", "", fmt.Errorf("%s exists and is not a regular file", s.tmp)
	case fi.Size() < present[len(present)-1].End:
		f.Close()
		return nil, nil, "the partial download is shorter than its resume state says; starting over",
			fmt.Sprintf("%d bytes, state claims up to %d", fi.Size(), present[len(present)-1].End), nil
	}
	if st.URL != res.URL {
		env.Log.Info().Msg("the URL differs from the partial download's, but size and validators match; resuming")
	}
	var n int64
	for _, r := range present {
		n += r.Len()
	}
	env.Log.Info().Str("path", s.tmp).Int64("present", n).Int64("size", res.Size).Int("ranges", len(present)).
		Msg("resuming a partial download")
	return f, present, "", "", nil
}

// create makes a new PATH.tmp exclusively. A regular file in the way is
// removed, with a log line saying why it was not resumed.
func (s *FileSink) create(env *pipeline.Env, why, detail string) (*os.File, error) {
	const flags = os.O_RDWR | os.O_CREATE | os.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	f, err := os.OpenFile(s.tmp, flags, 0o644)
	if err == nil || !errors.Is(err, fs.ErrExist) {
		return f, err
	}
	// O_EXCL fails on any existing name, symlinks included, without
	// following them; look at what is there.
	st, lerr := os.Lstat(s.tmp)
	switch {
	case lerr != nil:
		return nil, err
	case st.Mode()&fs.ModeSymlink != 0:
		return nil, symlinkError(s.tmp)
	case !st.Mode().IsRegular():
		return nil, fmt.Errorf("%s exists and is not a regular file", s.tmp)
	}
	if why == "" {
		why = "removing a partial download left by an earlier run; starting over"
	}
	ev := env.Log.Warn().Str("path", s.tmp).Int64("bytes", st.Size())
	if detail != "" {
		ev = ev.Str("reason", detail)
	}
	ev.Msg(why)
	if err := os.Remove(s.tmp); err != nil {
		return nil, err
	}
	return os.OpenFile(s.tmp, flags, 0o644)
}

// Run writes the chunks it receives into PATH.tmp and releases them. In
// sequential mode a chunk that does not start where the previous one ended
// is an error (a bug upstream), as is a second replica.
func (s *FileSink) Run(ctx context.Context, env *pipeline.Env, io pipeline.IO) error {
	if s.file == nil {
		return errors.New("file sink: Run without a successful Start")
	}
	w := batchWriter{s: s}
	if s.fsync {
		w.wb = &writeback{}
	}
	batch := make([]pipeline.Chunk, 0, maxGather)
	defer func() {
		for _, c := range batch {
			c.Release()
		}
	}()
	for {
		c, ok, err := io.Recv(ctx)
		if !ok {
			return err
		}
		batch = append(batch, c)
		open := s.gatherQueued(io.Chunks, &batch)
		var n int64
		for _, c := range batch {
			n += int64(len(c.Data))
		}
		err = w.write(batch)
		for _, c := range batch {
			c.Release()
		}
		clear(batch)
		batch = batch[:0]
		if err != nil {
			return err
		}
		if s.ck != nil {
			if err := s.ck.wrote(n); err != nil {
				return err
			}
		}
		if !open {
			return nil
		}
	}
}

// maxGather caps the chunks one write takes, well below the kernel's
// limit of 1024 iovecs.
const maxGather = 64

// gatherQueued adds to batch the chunks waiting in the queue, without
// blocking, while their buffers fit in the gather size; a sink without
// direct I/O takes one chunk at a time. It reports false when the queue
// is closed.
func (s *FileSink) gatherQueued(in <-chan pipeline.Chunk, batch *[]pipeline.Chunk) bool {
	if s.direct == nil || s.gather <= 0 {
		return true
	}
	// The graph's memory bound counts the whole input chunks that fit in
	// the gather size.
	limit := min(maxGather, int(s.gather/int64(max((*batch)[0].BufferSize(), 1))))
	for len(*batch) < limit {
		select {
		case c, ok := <-in:
			if !ok {
				return false
			}
			*batch = append(*batch, c)
		default:
			return true
		}
	}
	return true
}

// batchWriter writes the batches of one replica: runs of contiguous,
// aligned chunks with one direct pwritev, anything else chunk by chunk.
type batchWriter struct {
	s   *FileSink
	wb  *writeback // nil without fsync
	iov [][]byte   // reused for each run
}

func (w *batchWriter) write(batch []pipeline.Chunk) error {
	s := w.s
	if s.positional && len(batch) > 1 {
		slices.SortFunc(batch, func(a, b pipeline.Chunk) int { return cmp.Compare(a.Offset, b.Offset) })
	}
	for i := 0; i < len(batch); {
		j := i + 1
		for j < len(batch) && s.directWhole(batch[j]) && batch[j].Offset == batch[j-1].End() {
			j++
		}
		if j-i < 2 || !s.directWhole(batch[i]) {
			if err := w.one(batch[i]); err != nil {
				return err
			}
			i++
			continue
		}
		if err := w.run(batch[i:j]); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// directWhole reports whether all of c may be written direct.
func (s *FileSink) directWhole(c pipeline.Chunk) bool {
	if !s.directFor(c) || len(c.Data) == 0 {
		return false
	}
	start, end := s.direct.span(c.Data, c.Offset)
	return start == 0 && end == len(c.Data)
}

// one writes a single chunk.
func (w *batchWriter) one(c pipeline.Chunk) error {
	s := w.s
	if err := s.check(c.Offset, c.End()); err != nil {
		return err
	}
	n, err := s.writeAt(c.Data, c.Offset, w.wb, s.directFor(c))
	s.wrote(c.Offset, int64(n))
	return err
}

// directFor reports whether c's aligned blocks go direct.
func (s *FileSink) directFor(c pipeline.Chunk) bool {
	return s.direct != nil && c.BufferSize() >= s.directMin
}

// run writes contiguous chunks that may all go direct, with one pwritev.
// After a short write the rest goes chunk by chunk.
func (w *batchWriter) run(run []pipeline.Chunk) error {
	s := w.s
	first, last := run[0], run[len(run)-1]
	if err := s.check(first.Offset, last.End()); err != nil {
		return err
	}
	w.iov = w.iov[:0]
	for _, c := range run {
		w.iov = append(w.iov, c.Data)
	}
	n, err := s.direct.writevAt(w.iov, first.Offset)
	clear(w.iov)
	s.wrote(first.Offset, int64(n))
	if err != nil {
		return err
	}
	for _, c := range run {
		if n >= len(c.Data) {
			n -= len(c.Data)
			continue
		}
		if n > 0 {
			c = pipeline.Chunk{Offset: c.Offset + int64(n), Data: c.Data[n:]}
			n = 0
		}
		if err := w.one(c); err != nil {
			return err
		}
	}
	return nil
}

// check refuses to write [off, end) where it cannot belong.
func (s *FileSink) check(off, end int64) error {
	if off < 0 {
		return fmt.Errorf("chunk at negative offset %d", off)
	}
	if s.size >= 0 && end > s.size {
		return fmt.Errorf("chunk [%d,%d) ends past the resource size %d", off, end, s.size)
	}
	if !s.positional && off != s.next {
		return fmt.Errorf("out-of-order bytes: chunk starts at %d, expected %d (a bug in the stage feeding the sink)", off, s.next)
	}
	return nil
}

// wrote records that n bytes from off are in PATH.tmp.
func (s *FileSink) wrote(off, n int64) {
	if n <= 0 {
		return
	}
	if !s.positional {
		s.next += n
	}
	s.written.Add(n)
	s.mu.Lock()
	s.have.Add(pipeline.Range{Start: off, End: off + n})
	s.mu.Unlock()
}

// writeAt writes p at off and returns how many bytes from the start of p
// are written, the way io.WriterAt does. With direct, the aligned middle of
// p goes through the direct descriptor; the rest goes through the page
// cache, and wb (nil without fsync) starts its writeback.
func (s *FileSink) writeAt(p []byte, off int64, wb *writeback, direct bool) (int, error) {
	start, end := 0, 0
	if direct {
		start, end = s.direct.span(p, off)
	}
	if start == end {
		return s.cachedWriteAt(p, off, wb)
	}
	if start > 0 {
		if n, err := s.cachedWriteAt(p[:start], off, wb); err != nil {
			return n, err
		}
	}
	n, err := s.direct.writeAt(p[start:end], off+int64(start))
	done := start + n
	if err != nil || done == len(p) {
		return done, err
	}
	rest, err := s.cachedWriteAt(p[done:], off+int64(done), wb)
	return done + rest, err
}

func (s *FileSink) cachedWriteAt(p []byte, off int64, wb *writeback) (int, error) {
	n, err := s.file.WriteAt(p, off)
	wb.add(s.fd, off, int64(n))
	return n, err
}

// writeback starts the kernel's writeback of what one replica wrote, every
// writebackEvery bytes, over the span its recent chunks covered. It is a
// hint: errors are ignored, the final fsync reports any real I/O error.
type writeback struct {
	lo, hi, pending int64
}

func (w *writeback) add(fd int, off, n int64) {
	if w == nil || n == 0 {
		return
	}
	if w.pending == 0 {
		w.lo, w.hi = off, off+n
	} else {
		w.lo, w.hi = min(w.lo, off), max(w.hi, off+n)
	}
	w.pending += n
	if w.pending < writebackEvery {
		return
	}
	_ = unix.SyncFileRange(fd, w.lo, w.hi-w.lo, unix.SYNC_FILE_RANGE_WRITE)
	w.pending = 0
}

// checkpointer saves the resume state in the background, so that the
// writers never wait for an fdatasync: every checkpointEvery, or sooner
// when the writers have written checkpointBytes since the last one.
type checkpointer struct {
	s       *FileSink
	unsaved atomic.Int64 // bytes written since the last checkpoint began
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}

	errMu sync.Mutex
	err   error

	// dirSynced: PATH.tmp's directory entry is durable, so a state file
	// can no longer outlive it in a crash. Used by one goroutine at a time
	// (the checkpointer, then Finish after it stopped).
	dirSynced bool
}

func startCheckpointer(s *FileSink) *checkpointer {
	c := &checkpointer{s: s, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go c.loop()
	return c
}

// wrote counts n bytes written and returns the error of a failed
// checkpoint, which fails the run: an fdatasync error means written pages
// may be lost, so the file can no longer be trusted to hold them.
func (c *checkpointer) wrote(n int64) error {
	if c.unsaved.Add(n) >= checkpointBytes {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

func (c *checkpointer) loop() {
	defer close(c.done)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		case <-c.kick:
		}
		if c.unsaved.Load() == 0 {
			continue
		}
		if err := c.s.checkpoint(); err != nil {
			c.errMu.Lock()
			c.err = err
			c.errMu.Unlock()
			return
		}
	}
}

// halt stops the goroutine and waits for it.
func (c *checkpointer) halt() {
	close(c.stop)
	<-c.done
}

// checkpoint makes what was written durable and then records it: the
// ranges are read before the fdatasync, so the state claims only bytes that
// the sync covered.
func (s *FileSink) checkpoint() error {
	ck := s.ck
	if ck == nil { // Start did not run: Finish saves the state once
		ck = &checkpointer{}
	}
	ck.unsaved.Store(0)
	s.mu.Lock()
	ranges := s.have.Ranges()
	s.mu.Unlock()
	if err := fdatasync(s.fd); err != nil {
		return fmt.Errorf("fdatasync %s: %w", s.tmp, err)
	}
	if !ck.dirSynced {
		if err := syncDir(filepath.Dir(s.tmp)); err != nil {
			return err
		}
		ck.dirSynced = true
	}
	st := *s.state
	st.Ranges = nil
	st.setRanges(ranges)
	return writeState(s.tmp+".state", &st)
}

func fdatasync(fd int) error {
	for {
		err := unix.Fdatasync(fd)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// Finish closes PATH.tmp. After a successful run it first checks that every
// byte of the resource is there and fsyncs the file; only then may Commit
// rename it. After a failure it keeps PATH.tmp as partial data and saves
// its resume state, unless the failure says the data is corrupt
// (pipeline.ErrCorrupt): then PATH.tmp and its state are removed.
func (s *FileSink) Finish(ctx context.Context, env *pipeline.Env, runErr error) error {
	f := s.file
	if f == nil {
		return nil
	}
	if s.ck != nil {
		s.ck.halt()
	}
	defer func() { s.file, s.fd = nil, -1 }()
	if s.direct != nil {
		// Its writes are complete when they return; the fsync and close
		// of the ordinary descriptor cover the file.
		s.direct.Close()
		s.direct = nil
	}

	if errors.Is(runErr, pipeline.ErrCorrupt) {
		f.Close()
		rerr := os.Remove(s.tmp)
		if _, err := removeState(s.tmp + ".state"); rerr == nil {
			rerr = err
		}
		if rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			env.Log.Error().Err(rerr).Str("path", s.tmp).Msg("could not remove the corrupt download")
		} else {
			env.Log.Info().Str("path", s.tmp).Msg("removed the download: its bytes failed verification, so they are not kept for resume")
		}
		return nil
	}

	err := runErr
	if err == nil {
		err = s.complete(f)
	} else if !s.positional {
		// Preallocation made the file longer than the data; cut it so that
		// PATH.tmp is exactly the prefix that was received.
		_ = f.Truncate(s.next)
	}
	if err != nil && s.state != nil {
		if cerr := s.checkpoint(); cerr != nil {
			env.Log.Warn().Err(cerr).Str("path", s.tmp).Msg("could not save the resume state; a rerun starts over")
		}
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		s.mu.Lock()
		have := s.have.Len()
		s.mu.Unlock()
		env.Log.Info().Str("path", s.tmp).Int64("bytes", have).Bool("resumable", s.state != nil).Msg("kept partial download")
		if runErr != nil {
			return nil // the run already reports its error
		}
		return err
	}
	s.ready = true
	return nil
}

func (s *FileSink) complete(f *os.File) error {
	s.mu.Lock()
	have := s.have.Len()
	s.mu.Unlock()
	if s.size >= 0 && have != s.size {
		if !s.positional {
			_ = f.Truncate(s.next)
		}
		return fmt.Errorf("incomplete: wrote %d of %d bytes", have, s.size)
	}
	if s.size < 0 && !s.positional {
		if err := f.Truncate(s.next); err != nil {
			return err
		}
	}
	if s.fsync {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	return nil
}

// Commit renames PATH.tmp to PATH and, with fsync on, fsyncs the directory
// so that the rename is durable; then it removes the resume state, which
// describes a PATH.tmp that no longer exists. Without Overwrite an output
// that appeared during the run is left alone and the error wraps
// ErrOutputExists.
func (s *FileSink) Commit(ctx context.Context, env *pipeline.Env) error {
	if !s.ready {
		return errors.New("file sink: Commit without a successful Finish")
	}
	s.ready = false
	if err := s.rename(); err != nil {
		return err
	}
	if s.fsync {
		if err := syncDir(filepath.Dir(s.path)); err != nil {
			return err
		}
	}
	// A state left by a crash right here is harmless: without PATH.tmp the
	// next run removes it.
	if _, err := removeState(s.tmp + ".state"); err != nil {
		env.Log.Warn().Err(err).Msg("could not remove the resume state")
	}
	env.Log.Debug().Str("path", s.path).Int64("bytes", s.written.Load()).Msg("output complete")
	return nil
}

func (s *FileSink) rename() error {
	if s.overwrite {
		return os.Rename(s.tmp, s.path)
	}
	err := unix.Renameat2(unix.AT_FDCWD, s.tmp, unix.AT_FDCWD, s.path, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EEXIST):
		return &OutputExistsError{Path: s.path}
	case !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS):
		return &os.LinkError{Op: "rename", Old: s.tmp, New: s.path, Err: err}
	}
	// No renameat2 here: a hard link also refuses an existing name.
	if err := os.Link(s.tmp, s.path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return &OutputExistsError{Path: s.path}
		}
		return err
	}
	return os.Remove(s.tmp)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
