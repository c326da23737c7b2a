package metalink

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

// sampleV3 is a Metalink 3.0 document as aria2c reads them: two files,
// hashes and pieces under <verification> (pieces numbered out of order),
// URLs under <resources> with a type and a preference.
const sampleV3 = `<?xml version="1.0" encoding="UTF-8"?>
<metalink version="3.0" xmlns="http://www.metalinker.org/" generator="test">
  <files>
    <file name="sub/one.bin">
      <size>10</size>
      <verification>
        <hash type="md5">%s</hash>
        <hash type="sha256">%s</hash>
        <pieces length="4" type="sha256">
          <hash piece="2">%s</hash>
          <hash piece="0">%s</hash>
          <hash piece="1">%s</hash>
        </pieces>
      </verification>
      <resources>
        <url type="ftp" preference="100">ftp://f.example/one.bin</url>
        <url type="bittorrent" preference="100">http://t.example/one.torrent</url>
        <url type="http" preference="10" location="DE">http://b.example/one.bin</url>
        <url type="https" preference="100">https://a.example/one.bin</url>
        <url type="http">http://c.example/one.bin</url>
      </resources>
    </file>
    <file name="two.bin">
      <resources><url type="http">http://a.example/two.bin</url></resources>
    </file>
  </files>
</metalink>`

func sampleV3Doc() string {
	return sprintf(sampleV3, "00112233445566778899aabbccddeeff", sum("0123456789"), sum("89"), sum("0123"), sum("4567"))
}

func TestParseV3(t *testing.T) {
	files, err := ParseAll(strings.NewReader(sampleV3Doc()))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Fatalf("%d files, want 2", len(files))
	}
	f := files[0]
	if f.Name != "one.bin" || f.Size != 10 {
		t.Fatalf("name %q size %d", f.Name, f.Size)
	}
	var urls []string
	for _, u := range f.URLs {
		urls = append(urls, u.URL+"@"+u.Location)
	}
	// Preference 100 first, then 10, then none; ftp and bittorrent out.
	if got := strings.Join(urls, " "); got != "https://a.example/one.bin@ http://b.example/one.bin@de http://c.example/one.bin@" {
		t.Fatalf("urls %s", got)
	}
	if f.Checksum() != "sha256:"+sum("0123456789") || f.Hashes["md5"] != "00112233445566778899aabbccddeeff" {
		t.Fatalf("checksum %q, hashes %v", f.Checksum(), f.Hashes)
	}
	if p := f.Pieces; p == nil || p.Length != 4 || p.Algorithm != "sha256" || len(p.Hashes) != 3 ||
		hex.EncodeToString(p.Hashes[0]) != sum("0123") || hex.EncodeToString(p.Hashes[2]) != sum("89") {
		t.Fatalf("pieces %+v", f.Pieces)
	}
	if g := files[1]; g.Name != "two.bin" || g.Size != -1 || len(g.URLs) != 1 || g.Checksum() != "" {
		t.Fatalf("second file %+v", g)
	}
	// Parse reads v3 too, and picks a file by name.
	if one, err := Parse(strings.NewReader(sampleV3Doc()), "two.bin"); err != nil || one.URLs[0].URL != "http://a.example/two.bin" {
		t.Fatalf("Parse by name: %+v, %v", one, err)
	}
	if _, err := Parse(strings.NewReader(sampleV3Doc()), ""); err == nil || !strings.Contains(err.Error(), "2 files") {
		t.Fatalf("Parse of two files: %v", err)
	}
}

// ParseAll reads every file of an RFC 5854 document too.
func TestParseAllV4(t *testing.T) {
	doc := strings.Replace(sampleDoc(), "</metalink>", `<file name="x"><url>http://x/</url></file></metalink>`, 1)
	files, err := ParseAll(strings.NewReader(doc))
	if err != nil || len(files) != 2 || files[0].Name != "big.iso" || files[1].Name != "x" {
		t.Fatalf("%v, %v", files, err)
	}
}

func TestParseV3Refuses(t *testing.T) {
	doc := sampleV3Doc()
	for _, tt := range []struct{ name, doc, want string }{
		{"no file", `<metalink xmlns="http://www.metalinker.org/"><files/></metalink>`, "no file"},
		{"piece twice", strings.Replace(doc, `piece="1"`, `piece="0"`, 1), `piece "0" of 3`},
		{"piece out of range", strings.Replace(doc, `piece="2"`, `piece="3"`, 1), `piece "3" of 3`},
		{"preference", strings.Replace(doc, `preference="10"`, `preference="101"`, 1), `preference "101"`},
		{"short hash", strings.Replace(doc, sum("0123456789"), "abcd", 1), `file 1 ("sub/one.bin"): sha-256 hash`},
		{"second file bad", strings.Replace(doc, "http://a.example/two.bin", "ftp://a.example/two.bin", 1), `file 2 ("two.bin"): no http or https URL`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseAll(strings.NewReader(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}

func FuzzMetalinkV3(f *testing.F) {
	f.Add([]byte(sampleV3Doc()))
	f.Add([]byte(`<metalink xmlns="http://www.metalinker.org/"><files><file name="a"><size>3</size><verification><pieces length="1" type="sha1"><hash piece="0">00</hash></pieces></verification><resources><url type="http" preference="0">http://x/</url></resources></file></files></metalink>`))
	f.Add([]byte(`<metalink xmlns="http://www.metalinker.org/"><files><file><resources><url preference="100">https://h/p?q</url></resources></file></files></metalink>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		files, err := ParseAll(bytes.NewReader(data))
		if err != nil {
			return
		}
		if len(files) == 0 || len(files) > MaxFiles {
			t.Fatalf("%d files", len(files))
		}
		for _, file := range files {
			if len(file.URLs) == 0 || len(file.URLs) > MaxURLs {
				t.Fatalf("%d URLs", len(file.URLs))
			}
			for i, u := range file.URLs {
				if !strings.HasPrefix(u.URL, "http://") && !strings.HasPrefix(u.URL, "https://") {
					t.Fatalf("url %q", u.URL)
				}
				if u.Priority < 0 || u.Priority > 999999 || i > 0 && rank(file.URLs[i-1]) > rank(u) {
					t.Fatal("not sorted by priority")
				}
			}
			if strings.ContainsAny(file.Name, "/\\") || file.Name == ".." {
				t.Fatalf("name %q", file.Name)
			}
			if p := file.Pieces; p != nil {
				if file.Size < 0 || p.Length < 1 || int64(len(p.Hashes)) != (file.Size+p.Length-1)/p.Length {
					t.Fatalf("pieces %d of %d for %d bytes", len(p.Hashes), p.Length, file.Size)
				}
			}
		}
	})
}
