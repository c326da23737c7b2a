package httpx

import (
	"net/http"
	"sync"
)

// Prefetched is an answer the probe already has open, whose body holds the
// resource's bytes from offset 0 on (pipeline.Resource.Prefetched): the
// stage that would ask for the bytes at offset 0 takes it instead, which
// saves the download a round trip (for a small file, its only one). It is
// handed out once. The runner closes it when nobody took it (the run ended,
// or an earlier run already wrote offset 0). Its methods are safe for
// concurrent use and on a nil *Prefetched.
type Prefetched struct {
	mu   sync.Mutex
	resp *http.Response
}

// NewPrefetched wraps resp, an answer whose body starts at offset 0.
func NewPrefetched(resp *http.Response) *Prefetched { return &Prefetched{resp: resp} }

// Take returns the answer and with it the duty to close its body; nil when
// it was taken or closed already.
func (p *Prefetched) Take() *http.Response {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	resp := p.resp
	p.resp = nil
	return resp
}

// Close closes the answer's body unless a stage took it. It returns nil.
func (p *Prefetched) Close() error {
	if resp := p.Take(); resp != nil {
		resp.Body.Close()
	}
	return nil
}

// TakePrefetched takes the probe's open answer from a resource's
// Prefetched (nil when there is none, it was taken, or it is not a
// *Prefetched).
func TakePrefetched(prefetched any) *http.Response {
	p, _ := prefetched.(*Prefetched)
	return p.Take()
}

// Requester is the pipeline.Doer of a probed resource: it sends each
// request through Client with Header's fields added where the request has
// none of that name. It is safe for concurrent use.
type Requester struct {
	Client *http.Client
	Header http.Header
}

// Do sends req with the run's header fields added.
func (r Requester) Do(req *http.Request) (*http.Response, error) {
	if req.Header == nil {
		req.Header = make(http.Header, len(r.Header))
	}
	for k, v := range r.Header {
		if _, set := req.Header[k]; !set {
			req.Header[k] = append([]string(nil), v...)
		}
	}
	return r.Client.Do(req)
}
