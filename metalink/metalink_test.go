package metalink

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/dlflow/dlflow/httpx"
)

const sample = `<?xml version="1.0" encoding="UTF-8"?>
<metalink xmlns="urn:ietf:params:xml:ns:metalink">
  <published>2026-01-01T00:00:00Z</published>
  <file name="../../etc/big.iso">
    <size>10</size>
    <hash type="sha-256">%s</hash>
    <hash type="whirlpool">abc</hash>
    <pieces length="4" type="sha-256">
      <hash>%s</hash>
      <hash>%s</hash>
      <hash>%s</hash>
    </pieces>
    <url location="DE" priority="2">http://b.example/big.iso</url>
    <url>https://c.example/big.iso</url>
    <url location="us" priority="1">https://user:pw@a.example/big.iso</url>
    <url priority="1">ftp://d.example/big.iso</url>
    <metaurl mediatype="torrent">http://e.example/big.torrent</metaurl>
  </file>
</metalink>`

func sum(b string) string { h := sha256.Sum256([]byte(b)); return hex.EncodeToString(h[:]) }

func sampleDoc() string {
	return sprintf(sample, sum("0123456789"), sum("0123"), sum("4567"), sum("89"))
}

func sprintf(format string, args ...string) string {
	for _, a := range args {
		format = strings.Replace(format, "%s", a, 1)
	}
	return format
}

func TestParse(t *testing.T) {
	f, err := Parse(strings.NewReader(sampleDoc()), "")
	if err != nil {
		t.Fatal(err)
	}
	if f.Name != "big.iso" || f.Size != 10 {
		t.Fatalf("name %q size %d", f.Name, f.Size)
	}
	var urls []string
	for _, u := range f.URLs {
		urls = append(urls, u.URL+"@"+u.Location)
	}
	if got := strings.Join(urls, " "); got != "https://user:pw@a.example/big.iso@us http://b.example/big.iso@de https://c.example/big.iso@" {
		t.Fatalf("urls %s", got)
	}
	if f.Checksum() != "sha256:"+sum("0123456789") || len(f.Hashes) != 1 {
		t.Fatalf("checksum %q, hashes %v", f.Checksum(), f.Hashes)
	}
	if f.Pieces == nil || f.Pieces.Length != 4 || f.Pieces.Algorithm != "sha256" || len(f.Pieces.Hashes) != 3 {
		t.Fatalf("pieces %+v", f.Pieces)
	}
	if hex.EncodeToString(f.Pieces.Hashes[2]) != sum("89") {
		t.Fatal("last piece hash")
	}
}

func TestParseRefuses(t *testing.T) {
	doc := sampleDoc()
	for _, tt := range []struct{ name, doc, want string }{
		{"two files", strings.Replace(doc, "</metalink>", `<file name="x"><url>http://x/</url></file></metalink>`, 1), "2 files"},
		{"no http url", `<metalink><file name="a"><url>ftp://x/a</url></file></metalink>`, "no http or https URL"},
		{"bad size", strings.Replace(doc, "<size>10</size>", "<size>-1</size>", 1), `size "-1"`},
		{"short hash", strings.Replace(doc, sum("0123456789"), "abcd", 1), "not 32 bytes of hex"},
		{"missing piece", strings.Replace(doc, "<hash>"+sum("89")+"</hash>", "", 1), "2 piece hashes for 10 bytes"},
		{"piece length", strings.Replace(doc, `length="4"`, `length="0"`, 1), "piece length"},
		{"priority", strings.Replace(doc, `priority="2"`, `priority="0"`, 1), "priority"},
		{"not xml", "<metalink><file>", "metalink:"},
		{"too large", "<metalink>" + strings.Repeat(" ", MaxBytes) + "</metalink>", "larger than"},
		{"entity", `<!DOCTYPE m [<!ENTITY a "aaaa">]><metalink><file name="&a;"><url>http://x/</url></file></metalink>`, "entity"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.doc), "")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
	if f, err := Parse(strings.NewReader(strings.Replace(doc, "</metalink>", `<file name="x"><url>http://x/</url></file></metalink>`, 1)), "x"); err != nil || f.URLs[0].URL != "http://x/" {
		t.Fatalf("picking a file by name: %v", err)
	}
}

func FuzzMetalink(f *testing.F) {
	f.Add([]byte(sampleDoc()))
	f.Add([]byte(`<metalink><file name="a"><size>3</size><pieces length="1" type="sha-1"><hash>00</hash></pieces><url>http://x/</url></file></metalink>`))
	f.Add([]byte(`<metalink><file><url priority="999999">https://h/p?q</url></file></metalink>`))
	f.Add([]byte("<metalink><file name=\".bashrc\u202e\"><url>http://x/</url></file></metalink>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(bytes.NewReader(data), "")
		if err != nil {
			return
		}
		if len(file.URLs) == 0 || len(file.URLs) > MaxURLs {
			t.Fatalf("%d URLs", len(file.URLs))
		}
		for i, u := range file.URLs {
			if !strings.HasPrefix(u.URL, "http://") && !strings.HasPrefix(u.URL, "https://") {
				t.Fatalf("url %q", u.URL)
			}
			if i > 0 && rank(file.URLs[i-1]) > rank(u) {
				t.Fatal("not sorted by priority")
			}
		}
		if strings.ContainsAny(file.Name, "/\\") || file.Name == ".." {
			t.Fatalf("name %q", file.Name)
		}
		if file.Name != httpx.SafeFileName(file.Name) {
			t.Fatalf("name %q is not as a Content-Disposition name is cleaned", file.Name)
		}
		if p := file.Pieces; p != nil {
			if file.Size < 0 || p.Length < 1 || int64(len(p.Hashes)) != (file.Size+p.Length-1)/p.Length {
				t.Fatalf("pieces %d of %d for %d bytes", len(p.Hashes), p.Length, file.Size)
			}
		}
	})
}
