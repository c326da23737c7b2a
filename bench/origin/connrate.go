package origin

import (
	"context"
	"net"

	"golang.org/x/time/rate"
)

// connBurst is the token bucket size of a connection capped at bytesPerSec:
// about 1/32 s of traffic, at most 16 KiB, so that a connection left idle
// (between responses, during Latency) gains almost nothing, as on a real
// link, and writes go out in small, evenly paced pieces.
func connBurst(bytesPerSec int64) int {
	return int(min(max(bytesPerSec/32, 1), 16<<10))
}

// cappedListener caps the bytes per second written on each connection it
// accepts (Options.ConnRateLimit).
type cappedListener struct {
	net.Listener
	bytesPerSec int64
	life        context.Context // ends with the server: blocked writes give up
}

func (l *cappedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	burst := connBurst(l.bytesPerSec)
	return &cappedConn{Conn: c, limiter: rate.NewLimiter(rate.Limit(l.bytesPerSec), burst), burst: burst, life: l.life}, nil
}

// cappedConn is an accepted connection whose writes, over all the
// responses it carries (headers included), draw from one token bucket.
type cappedConn struct {
	net.Conn
	limiter *rate.Limiter
	burst   int
	life    context.Context
}

// Write blocks until the bucket allows each piece of p of at most a burst;
// it returns early, with what was written, when the server closes or a
// write fails.
func (c *cappedConn) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		k := min(len(p), c.burst)
		if err := c.limiter.WaitN(c.life, k); err != nil {
			return written, net.ErrClosed
		}
		n, err := c.Conn.Write(p[:k])
		written += n
		if err != nil {
			return written, err
		}
		p = p[k:]
	}
	return written, nil
}

// SetLinger reaches the TCP connection underneath, for resetConn.
func (c *cappedConn) SetLinger(sec int) error {
	if l, ok := c.Conn.(interface{ SetLinger(int) error }); ok {
		return l.SetLinger(sec)
	}
	return nil
}
