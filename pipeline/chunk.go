package pipeline

import (
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Chunk is a run of bytes of the resource that starts at Offset.
//
// Data usually lives in a buffer borrowed from a [Pool]. Ownership moves with
// the value: whoever holds a Chunk either passes it on (sends it to the next
// stage) or calls Release, exactly once. After either, the holder must not
// touch Data again, because the buffer may already hold someone else's bytes.
// A Chunk whose Data did not come from a Pool may be released or dropped
// freely.
type Chunk struct {
	Offset int64
	Data   []byte

	buf *buffer
	gen uint32
}

// End is the offset just past the chunk's last byte.
func (c Chunk) End() int64 { return c.Offset + int64(len(c.Data)) }

// Release gives up the holder's reference to the chunk's buffer; the buffer
// returns to its pool when the last reference is released. Releasing a chunk
// more often than it was borrowed and shared panics: it would hand one buffer
// to two owners.
func (c Chunk) Release() {
	if c.buf != nil {
		c.buf.pool.put(c.buf, c.gen)
	}
}

// Share returns a second reference to the chunk's bytes, which its holder
// must Release on its own. While a chunk is shared, nobody may modify Data.
// A stage uses it to pass a chunk on and still read it later, such as a hash
// stage waiting for the bytes before it to arrive. A chunk that did not come
// from a Pool is returned as is.
func (c Chunk) Share() Chunk {
	if c.buf != nil {
		if c.buf.refs.Add(1) <= 1 {
			panic("pipeline: Share of a released chunk")
		}
	}
	return c
}

// BufferSize is the size of the pooled buffer behind the chunk, which is
// what holding the chunk costs whatever its length; cap(Data) for a chunk
// that did not come from a Pool.
func (c Chunk) BufferSize() int {
	if c.buf != nil {
		return len(c.buf.b)
	}
	return cap(c.Data)
}

type buffer struct {
	b    []byte
	pool *Pool
	gen  atomic.Uint32 // bumped when the buffer returns to the pool; a stale Chunk no longer matches
	refs atomic.Int32  // holders of the buffer: 1 when borrowed, more when shared
}

// Pool hands out fixed-size buffers wrapped in Chunks. It is safe for
// concurrent use. Steady-state Get and Release do not allocate.
type Pool struct {
	size int
	// free holds returned buffers for reuse. Unlike a sync.Pool it never
	// drops them at a GC, so a run never allocates a buffer while an idle
	// one waits to be collected: the process holds what the memory bound
	// promises, not that plus garbage. The free list can only grow to the
	// peak in use; it goes away with the run's Buffers.
	mu    sync.Mutex
	free  []*buffer
	owner *Buffers
}

// Get borrows a buffer. The returned Chunk's Data has length Size; the caller
// sets Offset, reslices Data to what it filled, and owns the chunk.
func (p *Pool) Get(offset int64) Chunk {
	var b *buffer
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		b, p.free = p.free[n-1], p.free[:n-1]
	}
	p.mu.Unlock()
	if b == nil {
		b = &buffer{b: alignedBytes(p.size), pool: p}
	}
	b.refs.Store(1)
	p.owner.borrowed(int64(p.size))
	return Chunk{Offset: offset, Data: b.b, buf: b, gen: b.gen.Load()}
}

func (p *Pool) put(b *buffer, gen uint32) {
	if b.gen.Load() != gen {
		panic(fmt.Sprintf("pipeline: chunk of a %d-byte buffer released twice", p.size))
	}
	switch refs := b.refs.Add(-1); {
	case refs > 0:
		return // still shared
	case refs < 0 || !b.gen.CompareAndSwap(gen, gen+1):
		panic(fmt.Sprintf("pipeline: chunk of a %d-byte buffer released twice", p.size))
	}
	p.owner.returned(int64(p.size))
	p.mu.Lock()
	p.free = append(p.free, b)
	p.mu.Unlock()
}

// Buffers is the set of pools of one run, keyed by buffer size, with a count
// of the bytes currently borrowed from all of them and the peak of that count.
// The peak is what the memory bound printed by validate promises to hold.
type Buffers struct {
	mu    sync.Mutex
	pools map[int]*Pool
	inUse atomic.Int64
	peak  atomic.Int64
}

// NewBuffers returns an empty set of pools.
func NewBuffers() *Buffers { return &Buffers{pools: make(map[int]*Pool)} }

// Pool returns the pool of buffers of the given size, creating it on first
// use. Call it once when a stage starts, not per chunk.
func (b *Buffers) Pool(size int) *Pool {
	if size <= 0 {
		panic(fmt.Sprintf("pipeline: buffer size %d", size))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.pools[size]
	if p == nil {
		p = &Pool{size: size, owner: b}
		b.pools[size] = p
	}
	return p
}

// InUse is the number of bytes borrowed and not yet released.
func (b *Buffers) InUse() int64 { return b.inUse.Load() }

// Peak is the largest InUse seen so far.
func (b *Buffers) Peak() int64 { return b.peak.Load() }

func (b *Buffers) borrowed(n int64) {
	now := b.inUse.Add(n)
	for {
		peak := b.peak.Load()
		if now <= peak || b.peak.CompareAndSwap(peak, now) {
			return
		}
	}
}

func (b *Buffers) returned(n int64) { b.inUse.Add(-n) }

// bufferAlign is the boundary pooled buffers start on, so that a file sink
// can hand them to O_DIRECT writes (which need aligned memory) without a
// copy.
const bufferAlign = 4096

// alignedBytes returns size bytes starting at a bufferAlign boundary when
// size is at least that. Large allocations are page-aligned by the Go
// runtime today, so the second allocation is a fallback that costs nothing
// until the runtime changes.
func alignedBytes(size int) []byte {
	b := make([]byte, size)
	if size < bufferAlign || uintptr(unsafe.Pointer(&b[0]))%bufferAlign == 0 {
		return b
	}
	b = make([]byte, size+bufferAlign)
	skip := (bufferAlign - int(uintptr(unsafe.Pointer(&b[0]))%bufferAlign)) % bufferAlign
	return b[skip : skip+size : skip+size]
}
