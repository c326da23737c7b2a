package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/dlflow/dlflow/pipeline"
)

// cut fills part buffers from the input and hands each full one to u.
func (s *Sink) cut(ctx context.Context, env *pipeline.Env, edges pipeline.IO, size int64, u *uploader) error {
	var (
		part []byte // being filled, up to want bytes
		want int
		num  int   // its number
		next int64 = -1
	)
	flush := func() error {
		if len(part) == 0 {
			return nil
		}
		if num > maxParts {
			return fmt.Errorf("the resource needs more than %d parts of %v", maxParts, pipeline.ByteSize(s.partSize))
		}
		err := u.upload(num, part)
		part = nil
		return err
	}
	for {
		c, ok, err := edges.Recv(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return flush()
		}
		data, off := c.Data, c.Offset
		if next >= 0 && off != next && !(len(part) == 0 && off%s.partSize == 0) {
			c.Release()
			return fmt.Errorf("bytes at %d where %d was expected: the input is not whole parts in order", off, next)
		}
		for len(data) > 0 {
			if part == nil {
				if off%s.partSize != 0 {
					c.Release()
					return fmt.Errorf("bytes at %d do not start a part of %d bytes", off, s.partSize)
				}
				num = int(off/s.partSize) + 1
				n := s.partSize
				if size >= 0 {
					n = min(n, size-off)
				}
				if part, err = u.buffer(int(n)); err != nil {
					c.Release()
					return err
				}
				want = int(n)
			}
			k := min(len(data), want-len(part))
			part = append(part, data[:k]...)
			data, off = data[k:], off+int64(k)
			if len(part) == want {
				if err := flush(); err != nil {
					c.Release()
					return err
				}
			}
		}
		next = off
		c.Release()
	}
}

// noReadBack is the reader Resume returns: parts of a pending upload
// cannot be read.
type noReadBack struct{}

// ErrNoReadBack is what reading back the parts of a pending upload fails
// with.
var ErrNoReadBack = errors.New("the parts of a pending multipart upload cannot be read back")

func (noReadBack) ReadAt(p []byte, off int64) (int, error) { return 0, ErrNoReadBack }

// uploader runs the part uploads of one Run: at most Uploads at once, and
// at most Uploads+1 part buffers, which it recycles.
type uploader struct {
	s      *Sink
	env    *pipeline.Env
	ctx    context.Context
	cancel context.CancelFunc
	slots  chan struct{}
	free   chan []byte
	wg     sync.WaitGroup

	errOnce sync.Once
	err     error
}

func newUploader(ctx context.Context, s *Sink, env *pipeline.Env) *uploader {
	ctx, cancel := context.WithCancel(ctx)
	n := s.cfg.Uploads
	u := &uploader{s: s, env: env, ctx: ctx, cancel: cancel, slots: make(chan struct{}, n), free: make(chan []byte, n+1)}
	for range n + 1 {
		u.free <- nil // a token: the buffer is made on first use
	}
	return u
}

// buffer returns an empty buffer of capacity n, waiting for one of the
// Uploads+1 to be free.
func (u *uploader) buffer(n int) ([]byte, error) {
	select {
	case b := <-u.free:
		if cap(b) < n {
			b = make([]byte, 0, n)
		}
		return b[:0], nil
	case <-u.ctx.Done():
		return nil, u.failure()
	}
}

// upload uploads part num in the background once a slot is free; the
// buffer goes back to the free list when it is done.
func (u *uploader) upload(num int, part []byte) error {
	select {
	case u.slots <- struct{}{}:
	case <-u.ctx.Done():
		u.free <- part
		return u.failure()
	}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		defer func() { <-u.slots }()
		err := u.s.putPart(u.ctx, num, part)
		u.free <- part[:0]
		if err != nil {
			u.fail(err)
		}
	}()
	return nil
}

func (u *uploader) fail(err error) {
	u.errOnce.Do(func() {
		u.err = err
		u.cancel()
	})
}

// failure is the error that stopped the uploads, or the context's.
func (u *uploader) failure() error {
	u.fail(u.ctx.Err())
	return u.err
}

// wait waits for the uploads begun and returns the first error.
func (u *uploader) wait() error {
	u.wg.Wait()
	u.cancel()
	return u.err // no upload is left to set it
}

// putPart uploads one part, its bytes bound to the request by the
// upload's checksum (see checksumCRC32C), which the store checks, and
// records its ETag.
func (s *Sink) putPart(ctx context.Context, num int, data []byte) error {
	opts := partOptions(s.checksum, data)
	p, err := s.client.PutObjectPart(ctx, s.obj.Bucket, s.obj.Key, s.uploadID, num,
		bytes.NewReader(data), int64(len(data)), opts)
	if err != nil {
		return fmt.Errorf("upload part %d of %s: %w", num, s.obj, err)
	}
	s.mu.Lock()
	s.etags[num] = p.ETag
	s.mu.Unlock()
	s.stored.Add(int64(len(data)))
	s.uploaded.Add(1)
	return nil
}
