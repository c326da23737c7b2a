package origin

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"hash"
	"io"
	"net/http"
)

type digestKey struct {
	seed uint64
	alg  string
}

// setDigests adds the Repr-Digest and Digest headers that f asks for.
func (s *Server) setDigests(h http.Header, f *Faults, res resource) {
	seed := res.seed
	if f.WrongDigest {
		seed++
	}
	if sum := s.digest(seed, f.ReprDigest); sum != nil {
		h.Set("Repr-Digest", f.ReprDigest+"=:"+base64.StdEncoding.EncodeToString(sum)+":")
	}
	if sum := s.digest(seed, f.Digest); sum != nil {
		name := map[string]string{"sha-256": "SHA-256", "sha-512": "SHA-512"}[f.Digest]
		h.Set("Digest", name+"="+base64.StdEncoding.EncodeToString(sum))
	}
}

// digest is the alg ("sha-256" or "sha-512") digest of the content of
// seed, computed once per server; nil for any other alg.
func (s *Server) digest(seed uint64, alg string) []byte {
	var newHash func() hash.Hash
	switch alg {
	case "sha-256":
		newHash = sha256.New
	case "sha-512":
		newHash = sha512.New
	default:
		return nil
	}
	s.digestMu.Lock()
	defer s.digestMu.Unlock()
	key := digestKey{seed, alg}
	if sum, ok := s.digests[key]; ok {
		return sum
	}
	h := newHash()
	if s.opts.Content != nil {
		buf := make([]byte, s.opts.Size)
		s.fill(buf, 0, seed)
		h.Write(buf)
	} else {
		_, _ = io.Copy(h, NewReader(s.opts.Size, seed))
	}
	if s.digests == nil {
		s.digests = map[digestKey][]byte{}
	}
	s.digests[key] = h.Sum(nil)
	return s.digests[key]
}
