package dlflow

import (
	"context"
	"net"
	"net/url"
	"strings"
	"sync"
)

// hostKey names the host a URL connects to: lowercase host and port, the
// port filled in from the scheme. "" for a URL without a host (the probe
// then refuses it).
func hostKey(rawURL string) string {
	u, err := url.Parse(strings.TrimSpace(rawURL))
	if err != nil || u.Hostname() == "" {
		return ""
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if strings.EqualFold(u.Scheme, "https") {
			port = "443"
		}
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// hostLimiter is a weighted semaphore per host: at most max connections to
// one host, over all the downloads of a client. A nil *hostLimiter limits
// nothing.
type hostLimiter struct {
	max   int
	mu    sync.Mutex
	hosts map[string]*hostSlots
}

// hostSlots are one host's connections: a token in slots per connection in
// use. turn lets one acquirer at a time collect its tokens, so two
// downloads each holding part of what they need can never wait for each
// other.
type hostSlots struct {
	turn  chan struct{}
	slots chan struct{}
}

func newHostLimiter(max int) *hostLimiter {
	return &hostLimiter{max: max, hosts: map[string]*hostSlots{}}
}

func (l *hostLimiter) slotsOf(host string) *hostSlots {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.hosts[host]
	if !ok {
		s = &hostSlots{turn: make(chan struct{}, 1), slots: make(chan struct{}, l.max)}
		l.hosts[host] = s
	}
	return s
}

// acquire waits until n connections to host are free (n is capped at the
// limit, so it cannot wait forever) and takes them; release gives them
// back. An unknown host ("") is not limited, and n <= 0 takes nothing.
func (l *hostLimiter) acquire(ctx context.Context, host string, n int) (release func(), err error) {
	if l == nil || host == "" || n <= 0 {
		return noRelease, nil
	}
	n = min(max(n, 1), l.max)
	s := l.slotsOf(host)
	select {
	case s.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	defer func() { <-s.turn }()
	for got := 0; got < n; got++ {
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			s.give(got)
			return nil, context.Cause(ctx)
		}
	}
	var once sync.Once
	return func() { once.Do(func() { s.give(n) }) }, nil
}

func (s *hostSlots) give(n int) {
	for range n {
		<-s.slots
	}
}

func noRelease() {}

// tryAcquire is acquire without waiting: it takes n connections to host if
// they are free now, else nothing (ok false).
func (l *hostLimiter) tryAcquire(host string, n int) (release func(), ok bool) {
	if l == nil || host == "" || n <= 0 {
		return noRelease, true
	}
	n = min(n, l.max)
	s := l.slotsOf(host)
	select {
	case s.turn <- struct{}{}:
	default:
		return nil, false
	}
	defer func() { <-s.turn }()
	for got := 0; got < n; got++ {
		select {
		case s.slots <- struct{}{}:
		default:
			s.give(got)
			return nil, false
		}
	}
	var once sync.Once
	return func() { once.Do(func() { s.give(n) }) }, true
}
