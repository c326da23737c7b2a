package metalink

import (
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// NamespaceV3 is the XML namespace of Metalink 3.0 documents (.metalink),
// the format aria2c, older mirrors and download managers write. Parse and
// ParseAll read it as well as RFC 5854's (.meta4).
const NamespaceV3 = "http://www.metalinker.org/"

// MaxFiles bounds the files of one document.
const MaxFiles = 4096

// xmlFileV3 is a file of a Metalink 3.0 document: its hashes and pieces
// under <verification>, its URLs under <resources>, each with a type and
// a preference (0 to 100, most preferred highest).
type xmlFileV3 struct {
	Name         string `xml:"name,attr"`
	Size         string `xml:"size"`
	Verification struct {
		Hashes []xmlHash     `xml:"hash"`
		Pieces []xmlPiecesV3 `xml:"pieces"`
	} `xml:"verification"`
	URLs []xmlURLV3 `xml:"resources>url"`
}

type xmlPiecesV3 struct {
	Length string `xml:"length,attr"`
	Type   string `xml:"type,attr"`
	Hashes []struct {
		Piece string `xml:"piece,attr"`
		Value string `xml:",chardata"`
	} `xml:"hash"`
}

type xmlURLV3 struct {
	Type       string `xml:"type,attr"`
	Preference string `xml:"preference,attr"`
	Location   string `xml:"location,attr"`
	Value      string `xml:",chardata"`
}

// v3Algorithms maps the hash names of Metalink 3.0 to RFC 5854's; the
// names RFC 5854 uses are taken as they are.
var v3Algorithms = map[string]string{"sha1": "sha-1", "sha256": "sha-256", "sha512": "sha-512"}

func v3Algorithm(t string) string {
	t = strings.ToLower(strings.TrimSpace(t))
	if a, ok := v3Algorithms[t]; ok {
		return a
	}
	return t
}

// v4 turns a Metalink 3.0 file into the RFC 5854 form convert checks: the
// hashes and pieces keep their values (pieces in the order of their piece
// attribute, which must number them 0, 1, ... once each), a preference p
// becomes the priority 101-p (0 to 100 → 101 to 1), and URLs whose type
// is not http or https (ftp, bittorrent) are left out.
func (x xmlFileV3) v4() (xmlFile, error) {
	f := xmlFile{Name: x.Name, Size: x.Size}
	for _, h := range x.Verification.Hashes {
		f.Hashes = append(f.Hashes, xmlHash{Type: v3Algorithm(h.Type), Value: h.Value})
	}
	for _, p := range x.Verification.Pieces {
		if len(p.Hashes) > MaxPieces {
			return f, fmt.Errorf("metalink: more than %d piece hashes", MaxPieces)
		}
		hashes := make([]string, len(p.Hashes))
		seen := make([]bool, len(p.Hashes))
		for _, h := range p.Hashes {
			i, err := strconv.Atoi(strings.TrimSpace(h.Piece))
			if err != nil || i < 0 || i >= len(hashes) || seen[i] {
				return f, fmt.Errorf("metalink: piece %q of %d: want each of 0 to %d once", truncate(h.Piece, 20), len(hashes), len(hashes)-1)
			}
			hashes[i], seen[i] = h.Value, true
		}
		f.Pieces = append(f.Pieces, xmlPieces{Length: p.Length, Type: v3Algorithm(p.Type), Hashes: hashes})
	}
	for _, u := range x.URLs {
		if t := strings.ToLower(strings.TrimSpace(u.Type)); t != "" && t != "http" && t != "https" {
			continue
		}
		prio := ""
		if p := strings.TrimSpace(u.Preference); p != "" {
			n, err := strconv.Atoi(p)
			if err != nil || n < 0 || n > 100 {
				return f, fmt.Errorf("metalink: preference %q: want 0 to 100", truncate(p, 20))
			}
			prio = strconv.Itoa(101 - n)
		}
		f.URLs = append(f.URLs, xmlURL{Location: u.Location, Priority: prio, Value: u.Value})
	}
	return f, nil
}

// decode reads a Metalink document, RFC 5854 or 3.0 (told by the
// namespace of its root), and returns its files in the RFC 5854 form.
func decode(r io.Reader) ([]xmlFile, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("metalink: %w", err)
	}
	if len(data) > MaxBytes {
		return nil, fmt.Errorf("metalink: larger than %d bytes", MaxBytes)
	}
	var doc xmlMetalink
	dec := xml.NewDecoder(strings.NewReader(string(data)))
	dec.Strict = true
	dec.Entity = nil // no entities beyond XML's five: nothing to expand
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("metalink: %w", err)
	}
	if doc.XMLName.Space != NamespaceV3 {
		return doc.Files, nil
	}
	if len(doc.FilesV3) > MaxFiles {
		return nil, fmt.Errorf("metalink: more than %d files", MaxFiles)
	}
	files := make([]xmlFile, 0, len(doc.FilesV3))
	for _, x := range doc.FilesV3 {
		f, err := x.v4()
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

// ParseAll reads a Metalink document (RFC 5854 or 3.0) and returns all
// its files, in document order, each checked as Parse checks one. A
// document without a file is an error.
func ParseAll(r io.Reader) ([]*File, error) {
	xs, err := decode(r)
	if err != nil {
		return nil, err
	}
	switch {
	case len(xs) == 0:
		return nil, errNoFile
	case len(xs) > MaxFiles:
		return nil, fmt.Errorf("metalink: more than %d files", MaxFiles)
	}
	files := make([]*File, len(xs))
	for i, x := range xs {
		if files[i], err = convert(x); err != nil {
			return nil, fmt.Errorf("metalink: file %d (%q): %s", i+1, truncate(x.Name, 80), strings.TrimPrefix(err.Error(), "metalink: "))
		}
	}
	return files, nil
}
