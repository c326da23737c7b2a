package httpx

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"net/http"
	"strings"
)

// Algorithm is a digest algorithm a checksum may name.
type Algorithm struct {
	Name string // as written in a checksum: "sha256"
	Size int    // digest length in bytes
	New  func() hash.Hash
}

var algorithms = []Algorithm{
	{"sha256", sha256.Size, sha256.New},
	{"sha512", sha512.Size, sha512.New},
	{"sha1", sha1.Size, sha1.New},
	{"md5", md5.Size, md5.New},
}

// LookupAlgorithm finds an algorithm by name, ignoring case and dashes, so
// "SHA-256" (the HTTP spelling) and "sha256" are the same.
func LookupAlgorithm(name string) (Algorithm, bool) {
	name = strings.ToLower(strings.ReplaceAll(name, "-", ""))
	for _, a := range algorithms {
		if a.Name == name {
			return a, true
		}
	}
	return Algorithm{}, false
}

func algorithmNames() string {
	names := make([]string, len(algorithms))
	for i, a := range algorithms {
		names[i] = a.Name
	}
	return strings.Join(names, ", ")
}

// ParseChecksum reads a checksum written as algorithm:hex, such as
// "sha256:9f86d0...", and returns the algorithm's canonical name (sha256,
// sha512, sha1 or md5) and the digest in lowercase hex.
func ParseChecksum(s string) (algorithm, digest string, err error) {
	name, value, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return "", "", fmt.Errorf("%q is not a checksum: want algorithm:hex, such as sha256:<64 hex digits>", s)
	}
	a, ok := LookupAlgorithm(name)
	if !ok {
		return "", "", fmt.Errorf("%q is not a checksum: unknown algorithm %q (known: %s)", s, name, algorithmNames())
	}
	value = strings.ToLower(strings.TrimSpace(value))
	if raw, err := hex.DecodeString(value); err != nil || len(raw) != a.Size {
		return "", "", fmt.Errorf("%q is not a checksum: a %s digest is %d hex digits", s, a.Name, 2*a.Size)
	}
	return a.Name, value, nil
}

// ServerDigestAlgorithms are the algorithms a server's digest is verified
// with, in order of preference; others are ignored.
var ServerDigestAlgorithms = []string{"sha-256", "sha-512"}

// ParseDigests returns the digests of the whole representation that a
// response declares, keyed "sha-256" or "sha-512", hex encoded (see
// pipeline.Resource.Digests), or nil. Repr-Digest (RFC 9530) describes the
// representation whatever part a response carries. Digest (RFC 3230) is
// read only when full is set (a 200 or a HEAD): on a 206 servers disagree on
// whether it covers the part or the whole. Repr-Digest wins where both
// name an algorithm.
func ParseDigests(h http.Header, full bool) map[string]string {
	out := map[string]string{}
	if full {
		for _, v := range h.Values("Digest") {
			for member := range strings.SplitSeq(v, ",") {
				alg, value, ok := strings.Cut(strings.TrimSpace(member), "=")
				if ok {
					addDigest(out, alg, value)
				}
			}
		}
	}
	for _, v := range h.Values("Repr-Digest") {
		for member := range strings.SplitSeq(v, ",") {
			member, _, _ = strings.Cut(member, ";") // parameters carry nothing we use
			alg, value, ok := strings.Cut(strings.TrimSpace(member), "=")
			value = strings.TrimSpace(value)
			// A byte sequence in a structured field is :base64:.
			if ok && len(value) >= 2 && value[0] == ':' && value[len(value)-1] == ':' {
				addDigest(out, alg, value[1:len(value)-1])
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func addDigest(out map[string]string, alg, b64 string) {
	alg = strings.ToLower(strings.TrimSpace(alg))
	a, ok := LookupAlgorithm(alg)
	if !ok {
		return
	}
	known := false
	for _, name := range ServerDigestAlgorithms {
		known = known || name == alg
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if !known || err != nil || len(raw) != a.Size {
		return
	}
	out[alg] = hex.EncodeToString(raw)
}
