package pipeline

import (
	"context"
	"fmt"
	"io"
)

// Reader reads a stage's ordered input (IO.Chunks) as an io.Reader, for a
// stage that hands its bytes to code that pulls them, such as a
// decompressor or an archive reader. It runs in the stage's goroutine: no
// goroutine and no pipe are involved, and it holds at most the one chunk
// it is reading from, which it releases once read or on Close.
//
// Read blocks until a chunk arrives, the input is closed (io.EOF) or ctx
// is done (ctx's error). A chunk that does not start where the previous
// one ended is an error: the input must be ordered bytes starting at
// offset 0. A Reader is not safe for concurrent use; it belongs to one
// replica's Run.
type Reader struct {
	ctx  context.Context
	io   IO
	cur  Chunk
	rest []byte // unread bytes of cur
	held bool   // cur must be released
	next int64  // offset of the next byte
	err  error  // sticky: returned once rest is empty
}

// NewReader returns a Reader over in's chunks. The caller must Close it
// before Run returns.
func NewReader(ctx context.Context, in IO) *Reader {
	return &Reader{ctx: ctx, io: in}
}

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	for len(r.rest) == 0 {
		r.drop()
		if r.err != nil {
			return 0, r.err
		}
		c, ok, err := r.io.Recv(r.ctx)
		switch {
		case err != nil:
			r.err = err
			continue
		case !ok:
			r.err = io.EOF
			continue
		case c.Offset != r.next:
			c.Release()
			r.err = fmt.Errorf("input is not in order: chunk at offset %d, expected %d (put a reorder.heap before this stage)", c.Offset, r.next)
			continue
		}
		r.next = c.End()
		r.cur, r.rest, r.held = c, c.Data, true
	}
	n := copy(p, r.rest)
	r.rest = r.rest[n:]
	return n, nil
}

// Offset is the number of bytes read so far.
func (r *Reader) Offset() int64 { return r.next - int64(len(r.rest)) }

// Close releases the chunk being read, if any. Reading after Close
// returns io.ErrClosedPipe.
func (r *Reader) Close() error {
	r.drop()
	r.rest = nil
	r.err = io.ErrClosedPipe
	return nil
}

func (r *Reader) drop() {
	if r.held {
		r.cur.Release()
		r.cur, r.held = Chunk{}, false
	}
}
