package s3

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
)

// S3 multipart limits: every part but the last is at least minPartSize,
// none is larger than maxPartSize, and an upload has at most maxParts.
const (
	minPartSize = 5 << 20
	maxPartSize = 5 << 30
	maxParts    = 10000
)

// Config configures an s3.sink. Endpoint, region and credentials that
// are not set here come from the environment when the run starts (see
// Sink).
type Config struct {
	Object    string            `koanf:"object" help:"where the object goes, as s3://bucket/key; filled from the output (-o) when unset"`
	Endpoint  string            `koanf:"endpoint" help:"URL of the S3 service, such as https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:8333; default AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL, then AWS"`
	Region    string            `koanf:"region" help:"region of the bucket; default AWS_REGION, then AWS_DEFAULT_REGION, then us-east-1"`
	AccessKey string            `koanf:"access_key" help:"access key id; default AWS_ACCESS_KEY_ID (prefer the environment: a config file is easy to leak)"`
	SecretKey string            `koanf:"secret_key" help:"secret access key; default AWS_SECRET_ACCESS_KEY (prefer the environment)"`
	PartSize  pipeline.ByteSize `koanf:"part_size" help:"size of each multipart part, at least 5MiB; raised for objects of more than 10,000 parts"`
	Uploads   int               `koanf:"uploads" help:"parts uploaded at once; each holds a part in memory"`
	Overwrite bool              `koanf:"overwrite" help:"replace an existing object; default from --overwrite"`
	Resume    bool              `koanf:"resume" help:"continue the pending upload an interrupted run left; default on, off with --no-resume"`

	// verifies is set when the run verifies a checksum (the settings'):
	// such a run does not resume (see Sink).
	verifies bool
}

// TakeSettings fills the object from the output and takes overwrite and
// resume from the run's settings.
func (c *Config) TakeSettings(s pipeline.Settings) {
	if c.Object == "" {
		c.Object = s.Output
	}
	c.Overwrite = c.Overwrite || s.Overwrite
	c.Resume = c.Resume && s.Resume
	c.verifies = c.verifies || s.Checksum != ""
}

// ObjectURL is a parsed s3://bucket/key.
type ObjectURL struct{ Bucket, Key string }

func (o ObjectURL) String() string { return "s3://" + o.Bucket + "/" + o.Key }

// ParseObjectURL parses s3://bucket/key; the key may hold slashes, but no
// empty, "." or ".." segment: S3 stores such a key as it is, but clients
// and tools that map keys to paths (and some services, which normalize
// the request path) take it for another object, or none.
func ParseObjectURL(raw string) (ObjectURL, error) {
	rest, ok := strings.CutPrefix(raw, "s3://")
	if !ok {
		return ObjectURL{}, fmt.Errorf("object %q: not an s3://bucket/key URL", raw)
	}
	bucket, key, _ := strings.Cut(rest, "/")
	if bucket == "" || key == "" || strings.HasSuffix(key, "/") {
		return ObjectURL{}, fmt.Errorf("object %q: want s3://bucket/key with a bucket and a key that does not end in /", raw)
	}
	for seg := range strings.SplitSeq(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return ObjectURL{}, fmt.Errorf("object %q: the key has an empty, \".\" or \"..\" segment; name the object by its plain path", raw)
		}
	}
	return ObjectURL{Bucket: bucket, Key: key}, nil
}

// NoBucketError names the missing bucket; it wraps sinks.ErrNoBucket,
// which the dlflow package exports as ErrNoBucket.
type NoBucketError struct{ Bucket string }

func (e *NoBucketError) Error() string { return fmt.Sprintf("bucket %s does not exist", e.Bucket) }
func (e *NoBucketError) Unwrap() error { return sinks.ErrNoBucket }

var s3Def = pipeline.Def[Config]{
	Type:     "s3.sink",
	Provides: []pipeline.Capability{pipeline.ProvidesObject},
	Summary:  "uploads the bytes to an S3-compatible object store as a multipart upload, with no local copy",
	Consumes: pipeline.OrderedBytes,
	Produces: pipeline.None,
	Defaults: Config{PartSize: 8 << 20, Uploads: 4, Resume: true},
	New: func(c Config) (pipeline.Stage, error) {
		switch {
		case c.PartSize < minPartSize || c.PartSize > maxPartSize:
			return nil, fmt.Errorf("part_size must be between 5MiB and 5GiB, got %v", c.PartSize)
		case c.Uploads < 1:
			return nil, fmt.Errorf("uploads must be at least 1, got %d", c.Uploads)
		}
		return &Sink{cfg: c}, nil
	},
	// Each upload in flight holds its part, and one more part is being
	// filled. Parts larger than part_size (objects of more than 10,000
	// parts) raise this in proportion.
	Memory: func(c Config) pipeline.Memory {
		return pipeline.Memory{PerReplica: int64(c.Uploads+1) * int64(c.PartSize)}
	},
	MaxWorkers: func(Config) (int, string) { return 1, "it cuts one ordered stream into parts" },
}

// init registers s3.sink in pipeline.DefaultRegistry: importing the
// package is what makes the stage type known, as importing a database/sql
// driver makes it known. A second registration of the name panics.
func init() { pipeline.MustRegister(pipeline.DefaultRegistry, s3Def) }

// Register adds the s3.sink stage type to r, for a program that builds its
// graphs from a registry of its own instead of pipeline.DefaultRegistry.
// It fails when r has the name already.
func Register(r *pipeline.Registry) error { return pipeline.Register(r, s3Def) }

// Sink is the s3.sink stage: it uploads the resource to an object of an
// S3-compatible store while it downloads, as a multipart upload, with no
// local copy. It consumes ordered bytes (after reorder.heap, whose window
// bounds what the parallel readers hold), cuts them into parts and uploads
// up to Uploads parts at once: its memory is (Uploads+1) parts.
//
// The part size is part_size, raised for a resource of more than 10,000
// parts to the size over 10,000 rounded up to a MiB, so it follows from
// the probed size and is the same in every run of one resource.
//
// Lifecycle, and what is visible when:
//   - Preflight refuses an existing object unless overwrite is set
//     (HeadObject; an *OutputExistsError), and a missing bucket (a
//     *NoBucketError).
//   - Start begins a multipart upload, probes whether the store checks
//     CRC32C part checksums (see beginUpload), and writes a small state
//     object beside the object, KEY.dlflow-upload, holding the upload
//     id, the part size, the part checksum and the source's validators
//     (size, ETag, Last-Modified, a hash of the URL). It holds no secret.
//   - Commit completes the upload, which makes the object appear whole,
//     and deletes the state object. Nothing of the object is visible
//     before.
//   - A failure (any run error but a cancellation: the source failed, a
//     checksum did not match, an upload failed) aborts the upload and
//     deletes the state object: no part stays stored.
//   - An interruption keeps both, for the next run to resume: a process
//     killed runs nothing, and a run error that wraps context.Canceled
//     (Download.Cancel, the CLI's SIGINT or SIGTERM) is treated the same
//     way, as the file sink keeps PATH.tmp. A context's deadline is a
//     failure.
//     A pending upload that is never resumed costs storage until a
//     bucket lifecycle rule (AbortIncompleteMultipartUpload) removes it.
//
// Resume reads the state object; when it belongs to the same source (URL,
// size and validators, as for files) and part size, it lists the parts
// of the pending upload (ListObjectParts), and the whole parts of the
// expected size become Env.Have: the splitter fetches only the rest. A
// state that does not match is started over: its upload is aborted. S3
// cannot read back the parts of a pending upload, so a run that verifies
// a checksum (set by the settings, or a digest the server declares)
// starts over instead of resuming.
//
// Credentials are never logged nor written to the state object.
type Sink struct {
	cfg Config

	obj       ObjectURL
	client    *minio.Core
	transport *http.Transport

	// Of the current run.
	partSize int64
	uploadID string
	checksum string // what binds each part's bytes: checksumCRC32C or checksumMD5

	mu     sync.Mutex
	etags  map[int]string // parts of this upload, listed or uploaded
	stored atomic.Int64   // bytes in parts (listed or uploaded)

	uploaded atomic.Int64 // parts uploaded by this run
	listed   atomic.Int64 // parts found in place by Resume
}

var (
	_ pipeline.Preflighter = (*Sink)(nil)
	_ pipeline.Resumer     = (*Sink)(nil)
	_ pipeline.Starter     = (*Sink)(nil)
	_ pipeline.Finisher    = (*Sink)(nil)
	_ pipeline.Committer   = (*Sink)(nil)
)

// connect parses the object and builds the client, once.
func (s *Sink) connect() error {
	if s.client != nil {
		return nil
	}
	obj, err := ParseObjectURL(s.cfg.Object)
	if err != nil {
		return err
	}
	client, transport, err := newS3Client(s.cfg)
	if err != nil {
		return err
	}
	s.obj, s.client, s.transport = obj, client, transport
	return nil
}

// closeIdle closes the client's idle connections, whose goroutines would
// otherwise outlive the run.
func (s *Sink) closeIdle() {
	if s.transport != nil {
		s.transport.CloseIdleConnections()
	}
}

// Preflight refuses an existing object unless overwrite is set, and a
// missing bucket (a *NoBucketError). It asks the store, within a minute
// and until ctx is done.
func (s *Sink) Preflight(ctx context.Context, env *pipeline.Env) error {
	if err := s.connect(); err != nil {
		return err
	}
	defer s.closeIdle()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return s.refuseExisting(ctx)
}

// refuseExisting refuses an existing object unless overwrite is set, and
// a missing bucket: the answer to HEAD of a missing object in a missing
// bucket has no body, so no code that tells them apart, and the bucket
// is asked about when the object is not found.
func (s *Sink) refuseExisting(ctx context.Context) error {
	if !s.cfg.Overwrite {
		_, err := s.client.StatObject(ctx, s.obj.Bucket, s.obj.Key, minio.StatObjectOptions{})
		switch {
		case err == nil:
			return &sinks.OutputExistsError{Path: s.obj.String()}
		case isNoSuchBucket(err):
			return &NoBucketError{Bucket: s.obj.Bucket}
		case !isNotFound(err):
			return fmt.Errorf("head %s: %w", s.obj, err)
		}
	}
	ok, err := s.client.BucketExists(ctx, s.obj.Bucket)
	switch {
	case err != nil:
		return fmt.Errorf("head bucket %s: %w", s.obj.Bucket, err)
	case !ok:
		return &NoBucketError{Bucket: s.obj.Bucket}
	}
	return nil
}

// partSizeFor is the part size for a resource of size bytes (-1:
// unknown): part_size, or more when size would need more than maxParts
// parts.
func partSizeFor(size, configured int64) int64 {
	if size <= int64(configured)*maxParts {
		return configured
	}
	p := (size + maxParts - 1) / maxParts
	return (p + 1<<20 - 1) &^ (1<<20 - 1)
}

// Resume finds what an interrupted run uploaded: see Sink. The reader
// it returns refuses to read, since parts of a pending upload cannot be
// read back; no stage needs to when Resume reports ranges, because a run
// that verifies a checksum does not resume.
func (s *Sink) Resume(ctx context.Context, env *pipeline.Env) ([]pipeline.Range, io.ReaderAt, error) {
	s.resetRun()
	if err := s.connect(); err != nil {
		return nil, nil, err
	}
	res := env.Resource
	s.partSize = partSizeFor(resourceSize(env), int64(s.cfg.PartSize))
	st, err := s.readState(ctx)
	if errors.Is(err, errNoState) {
		return nil, nil, nil
	}
	if errors.Is(err, sinks.ErrNoBucket) {
		return nil, nil, err
	}
	if err != nil {
		// A state that cannot be read is not trusted, nor kept.
		env.Log.Warn().Err(err).Msg("unreadable upload state; starting over")
		return nil, nil, s.dropState(ctx, env, "")
	}
	why := ""
	switch {
	case !s.cfg.Resume:
		why = "resume is off"
	case env.Reshaped:
		why = "a stage before the sink reshapes the bytes: their offsets are not the resource's"
	case sinks.Resumable(res) != "":
		why = sinks.Resumable(res)
	case st.URLSum != sinks.IdentityOf(res).URLSum:
		why = "the URL differs"
	case st.PartSize != s.partSize:
		why = fmt.Sprintf("part size is now %d, was %d", s.partSize, st.PartSize)
	case s.cfg.verifies || len(res.Digests) > 0:
		why = "a checksum is verified, and the parts of a pending upload cannot be read back to hash"
	default:
		why = st.Mismatch(res)
	}
	if why != "" {
		env.Log.Info().Str("reason", why).Msg("not resuming the pending upload; aborting it and starting over")
		return nil, nil, s.dropState(ctx, env, st.UploadID)
	}
	parts, err := s.listParts(ctx, st.UploadID)
	if isNoSuchUpload(err) {
		env.Log.Info().Msg("the pending upload is gone; starting over")
		return nil, nil, s.dropState(ctx, env, "")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list parts of the pending upload of %s: %w", s.obj, err)
	}
	var have []pipeline.Range
	for _, p := range parts {
		r := s.partRange(p.PartNumber, res.Size)
		if r.Len() <= 0 || p.Size != r.Len() {
			continue // not a part this run would cut: uploaded again
		}
		s.etags[p.PartNumber] = p.ETag
		s.stored.Add(p.Size)
		have = append(have, r)
	}
	s.listed.Store(int64(len(s.etags)))
	s.uploadID, s.checksum = st.UploadID, cmp.Or(st.Checksum, checksumMD5)
	env.Log.Info().Int("parts", len(have)).Int64("bytes", s.stored.Load()).Msg("resuming the pending upload")
	if len(have) == 0 {
		return nil, nil, nil
	}
	return mergeRanges(have), noReadBack{}, nil
}

// resourceSize is the number of bytes the sink receives, -1 when unknown:
// the resource's size, unless a stage before reshapes the bytes.
func resourceSize(env *pipeline.Env) int64 {
	if env.Reshaped || env.Resource == nil || !env.Resource.SizeKnown() {
		return -1
	}
	return env.Resource.Size
}

// partRange is the bytes of part n (1-based) of a resource of size bytes.
func (s *Sink) partRange(n int, size int64) pipeline.Range {
	start := int64(n-1) * s.partSize
	return pipeline.Range{Start: start, End: min(start+s.partSize, size)}
}

// mergeRanges joins ranges sorted by start that touch.
func mergeRanges(rs []pipeline.Range) []pipeline.Range {
	slices.SortFunc(rs, func(a, b pipeline.Range) int { return cmp.Compare(a.Start, b.Start) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && out[n-1].End == r.Start {
			out[n-1].End = r.End
			continue
		}
		out = append(out, r)
	}
	return out
}

func (s *Sink) resetRun() {
	s.uploadID, s.checksum = "", ""
	s.etags = map[int]string{}
	s.stored.Store(0)
	s.uploaded.Store(0)
	s.listed.Store(0)
}

// Start begins a new multipart upload unless Resume found one, and
// records it in the state object.
func (s *Sink) Start(ctx context.Context, env *pipeline.Env) error {
	if s.etags == nil { // no Resume ran: a graph without resumers
		s.resetRun()
	}
	if err := s.connect(); err != nil {
		return err
	}
	res := env.Resource
	if s.partSize == 0 {
		s.partSize = partSizeFor(resourceSize(env), int64(s.cfg.PartSize))
	}
	if s.uploadID != "" {
		return nil
	}
	if err := s.refuseExisting(ctx); err != nil {
		return err
	}
	id, checksum, err := s.beginUpload(ctx)
	if err != nil {
		if id != "" {
			s.uploadID = id
			s.abort(env)
		}
		return fmt.Errorf("begin the upload of %s: %w", s.obj, err)
	}
	s.uploadID, s.checksum = id, checksum
	st := &s3State{Identity: sinks.IdentityOf(res), UploadID: id, PartSize: s.partSize, Checksum: checksum}
	if err := s.writeState(ctx, st); err != nil {
		s.abort(env)
		return err
	}
	env.Log.Debug().Str("object", s.obj.String()).Int64("part_size", s.partSize).Str("checksum", checksum).Msg("multipart upload begun")
	return nil
}

// Run cuts the ordered input into parts and uploads them, up to Uploads
// at once. It returns once every part it began is uploaded or failed.
func (s *Sink) Run(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
	size := resourceSize(env)
	u := newUploader(ctx, s, env)
	err := s.cut(ctx, env, edges, size, u)
	if werr := u.wait(); err == nil {
		err = werr
	}
	return err
}

// Finish aborts the upload after a failure and keeps it after an
// interruption (see Sink).
func (s *Sink) Finish(ctx context.Context, env *pipeline.Env, runErr error) error {
	if runErr == nil {
		return nil // Commit follows
	}
	defer s.closeIdle()
	if s.uploadID == "" {
		return nil
	}
	// Only a cancellation is an interruption: a deadline is a failure
	// (the source's timeouts are DeadlineExceeded errors too).
	if errors.Is(runErr, context.Canceled) {
		env.Log.Info().Str("object", s.obj.String()).Int64("bytes", s.stored.Load()).
			Msg("interrupted: the pending upload is kept for a later run to resume")
		return nil
	}
	return s.abort(env)
}

// abort aborts the upload and deletes the state object, within a minute
// of its own: the run's context may be done.
func (s *Sink) abort(env *pipeline.Env) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := s.client.AbortMultipartUpload(ctx, s.obj.Bucket, s.obj.Key, s.uploadID)
	if err != nil && !isNoSuchUpload(err) {
		return fmt.Errorf("abort the upload of %s: %w", s.obj, err)
	}
	s.uploadID = ""
	if err := s.removeState(ctx); err != nil {
		return err
	}
	env.Log.Info().Str("object", s.obj.String()).Int64("parts", s.uploaded.Load()+s.listed.Load()).Msg("upload aborted")
	return nil
}

// Commit completes the upload, which makes the object appear, and
// deletes the state object.
func (s *Sink) Commit(ctx context.Context, env *pipeline.Env) error {
	defer s.closeIdle()
	size := resourceSize(env)
	if got := s.stored.Load(); size >= 0 && got != size {
		err := fmt.Errorf("incomplete: %d of %d bytes uploaded", got, size)
		return errors.Join(err, s.abort(env))
	}
	s.mu.Lock()
	parts := make([]minio.CompletePart, 0, len(s.etags))
	for n, etag := range s.etags {
		parts = append(parts, minio.CompletePart{PartNumber: n, ETag: etag})
	}
	s.mu.Unlock()
	slices.SortFunc(parts, func(a, b minio.CompletePart) int { return a.PartNumber - b.PartNumber })
	if len(parts) == 0 {
		// S3 completes no upload of zero parts: an empty object is put.
		if err := s.abort(env); err != nil {
			return err
		}
		if _, err := s.client.PutObject(ctx, s.obj.Bucket, s.obj.Key, strings.NewReader(""), 0, "", "", minio.PutObjectOptions{}); err != nil {
			return fmt.Errorf("put %s: %w", s.obj, err)
		}
		return nil
	}
	if _, err := s.client.CompleteMultipartUpload(ctx, s.obj.Bucket, s.obj.Key, s.uploadID, parts, minio.PutObjectOptions{}); err != nil {
		return errors.Join(fmt.Errorf("complete the upload of %s: %w", s.obj, err), s.abort(env))
	}
	s.uploadID = ""
	if err := s.removeState(ctx); err != nil {
		env.Log.Warn().Err(err).Msg("the object is complete, but its upload state object stays")
	}
	env.Log.Debug().Str("object", s.obj.String()).Int("parts", len(parts)).Msg("upload complete")
	return nil
}
