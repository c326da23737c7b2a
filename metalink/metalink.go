// Package metalink reads Metalink files (RFC 5854, .meta4, and Metalink
// 3.0, .metalink): for each file, its URLs with their priorities and
// locations, its size, its hashes and its piece hashes. A Metalink file is untrusted input: Parse bounds what
// it reads and checks every value it returns.
package metalink

import (
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/dlflow/dlflow/httpx"
)

// Limits on what Parse accepts.
const (
	MaxBytes  = 8 << 20 // of the document
	MaxURLs   = 64      // per file, after dropping those not http(s)
	MaxPieces = 1 << 20 // piece hashes per file
	// MaxPieceLength bounds a piece: a reader holds a whole piece until
	// it is verified.
	MaxPieceLength = 64 << 20
)

// File is the one file of a Metalink document a download fetches.
type File struct {
	// Name is the file's name, reduced to a safe base name ("" if none
	// is left).
	Name string
	// Size is its length in bytes, -1 when not given.
	Size int64
	// URLs are its http and https URLs, most preferred first: by
	// priority (1 first; none last), then in document order.
	URLs []URL
	// Hashes are its digests by algorithm ("sha256", "sha512", "sha1",
	// "md5"), lowercase hex.
	Hashes map[string]string
	// Pieces are the digests of its consecutive pieces; nil when none.
	Pieces *Pieces
}

// URL is one source of the file.
type URL struct {
	URL      string
	Priority int    // 1 (most preferred) to 999999; 0: none given
	Location string // ISO 3166-1 alpha-2 country code, lowercase, or ""
}

// Pieces are the hashes of consecutive pieces of Length bytes (the last
// may be shorter).
type Pieces struct {
	Length    int64
	Algorithm string // as in File.Hashes
	Hashes    [][]byte
}

// Checksum is the file's strongest hash as "algorithm:hex", or "".
func (f *File) Checksum() string {
	for _, alg := range []string{"sha512", "sha256", "sha1", "md5"} {
		if h, ok := f.Hashes[alg]; ok {
			return alg + ":" + h
		}
	}
	return ""
}

type xmlMetalink struct {
	XMLName xml.Name    `xml:"metalink"`
	Files   []xmlFile   `xml:"file"`
	FilesV3 []xmlFileV3 `xml:"files>file"` // Metalink 3.0 (see v3.go)
}

type xmlFile struct {
	Name   string      `xml:"name,attr"`
	Size   string      `xml:"size"`
	Hashes []xmlHash   `xml:"hash"`
	Pieces []xmlPieces `xml:"pieces"`
	URLs   []xmlURL    `xml:"url"`
}

type xmlHash struct {
	Type  string `xml:"type,attr"`
	Value string `xml:",chardata"`
}

type xmlPieces struct {
	Length string   `xml:"length,attr"`
	Type   string   `xml:"type,attr"`
	Hashes []string `xml:"hash"`
}

type xmlURL struct {
	Location string `xml:"location,attr"`
	Priority string `xml:"priority,attr"`
	Value    string `xml:",chardata"`
}

// algorithms maps the IANA hash names Metalink uses to dlflow's, with
// their digest lengths in bytes.
var algorithms = map[string]struct {
	name string
	size int
}{
	"sha-256": {"sha256", 32}, "sha-512": {"sha512", 64}, "sha-1": {"sha1", 20}, "md5": {"md5", 16},
}

var errNoFile = errors.New("metalink: no file")

// Parse reads a Metalink document (RFC 5854 or 3.0) and returns its file. A document with
// several files is refused, unless name picks one (its name attribute).
// Hashes of unknown algorithms are ignored; a known one that is not hex
// of the right length is an error, as is a size that is not a number, a
// file without an http(s) URL, or pieces that do not cover the size.
func Parse(r io.Reader, name string) (*File, error) {
	files, err := decode(r)
	if err != nil {
		return nil, err
	}
	if name != "" {
		files = slices.DeleteFunc(slices.Clone(files), func(f xmlFile) bool { return f.Name != name })
	}
	switch {
	case len(files) == 0 && name != "":
		return nil, fmt.Errorf("metalink: no file named %q", name)
	case len(files) == 0:
		return nil, errNoFile
	case len(files) > 1:
		return nil, fmt.Errorf("metalink: %d files; dlflow downloads one at a time", len(files))
	}
	return convert(files[0])
}

func convert(x xmlFile) (*File, error) {
	f := &File{Name: safeName(x.Name), Size: -1, Hashes: map[string]string{}}
	if s := strings.TrimSpace(x.Size); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("metalink: size %q is not a length", s)
		}
		f.Size = n
	}
	for _, h := range x.Hashes {
		alg, ok := algorithms[strings.ToLower(strings.TrimSpace(h.Type))]
		if !ok {
			continue
		}
		sum, err := digest(h.Value, alg.size)
		if err != nil {
			return nil, fmt.Errorf("metalink: %s hash: %w", h.Type, err)
		}
		f.Hashes[alg.name] = hex.EncodeToString(sum)
	}
	for _, u := range x.URLs {
		raw := strings.TrimSpace(u.Value)
		pu, err := url.Parse(raw)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			continue // ftp, bittorrent, garbage: not ours
		}
		prio := 0
		if p := strings.TrimSpace(u.Priority); p != "" {
			if prio, err = strconv.Atoi(p); err != nil || prio < 1 || prio > 999999 {
				return nil, fmt.Errorf("metalink: priority %q of %s: want 1 to 999999", p, pu.Redacted())
			}
		}
		loc := strings.ToLower(strings.TrimSpace(u.Location))
		if len(loc) != 2 || strings.Trim(loc, "abcdefghijklmnopqrstuvwxyz") != "" {
			loc = ""
		}
		if len(f.URLs) == MaxURLs {
			return nil, fmt.Errorf("metalink: more than %d URLs", MaxURLs)
		}
		f.URLs = append(f.URLs, URL{URL: raw, Priority: prio, Location: loc})
	}
	if len(f.URLs) == 0 {
		return nil, errors.New("metalink: no http or https URL")
	}
	slices.SortStableFunc(f.URLs, func(a, b URL) int { return rank(a) - rank(b) })
	for _, p := range x.Pieces {
		alg, ok := algorithms[strings.ToLower(strings.TrimSpace(p.Type))]
		if !ok || f.Pieces != nil {
			continue // one set is enough; the first known one
		}
		pieces, err := convertPieces(p, alg.name, alg.size, f.Size)
		if err != nil {
			return nil, err
		}
		f.Pieces = pieces
	}
	return f, nil
}

// rank orders URLs: priority 1 first, none last.
func rank(u URL) int {
	if u.Priority == 0 {
		return 1000000
	}
	return u.Priority
}

func convertPieces(p xmlPieces, alg string, size int, fileSize int64) (*Pieces, error) {
	length, err := strconv.ParseInt(strings.TrimSpace(p.Length), 10, 64)
	if err != nil || length < 1 || length > MaxPieceLength {
		return nil, fmt.Errorf("metalink: piece length %q: want 1 to %d", p.Length, int64(MaxPieceLength))
	}
	if len(p.Hashes) > MaxPieces {
		return nil, fmt.Errorf("metalink: more than %d piece hashes", MaxPieces)
	}
	if fileSize < 0 {
		return nil, errors.New("metalink: piece hashes without the file's size")
	}
	if want := (fileSize + length - 1) / length; int64(len(p.Hashes)) != want {
		return nil, fmt.Errorf("metalink: %d piece hashes for %d bytes in pieces of %d; want %d", len(p.Hashes), fileSize, length, want)
	}
	out := &Pieces{Length: length, Algorithm: alg, Hashes: make([][]byte, len(p.Hashes))}
	for i, h := range p.Hashes {
		if out.Hashes[i], err = digest(h, size); err != nil {
			return nil, fmt.Errorf("metalink: piece %d: %w", i, err)
		}
	}
	return out, nil
}

func digest(s string, size int) ([]byte, error) {
	s = strings.TrimSpace(s)
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != size {
		return nil, fmt.Errorf("%q is not %d bytes of hex", truncate(s, 80), size)
	}
	return b, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// safeName reduces a name from the document to a base name as a
// Content-Disposition name is (httpx.SafeFileName: no directories, no
// leading dots, no control or bidirectional characters).
func safeName(name string) string {
	return httpx.SafeFileName(strings.TrimSpace(name))
}
