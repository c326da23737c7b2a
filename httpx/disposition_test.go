package httpx

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseContentDisposition(t *testing.T) {
	long := strings.Repeat("a", 300) + ".tar.gz"
	for _, tc := range []struct{ in, want string }{
		{`attachment; filename="report.pdf"`, "report.pdf"},
		{`attachment; filename=report.pdf`, "report.pdf"},
		{`inline; FILENAME="a b.txt"`, "a b.txt"},
		{`attachment; filename=my file.txt; size=3`, "my file.txt"},
		{`attachment; filename="q\"uote.txt"`, "q_uote.txt"},
		{`attachment; filename*=UTF-8''%e2%82%ac%20rates.txt`, "€ rates.txt"},
		{`attachment; filename*=iso-8859-1'en'%A3%20rates.txt`, "£ rates.txt"},
		{`attachment; filename*=UTF-8''bad%ff.txt; filename="good.txt"`, "good.txt"},
		{`attachment; filename="x.txt"; filename*=UTF-8''y.txt`, "y.txt"},
		{`attachment; filename="../../etc/passwd"`, "passwd"},
		{`attachment; filename="..\\..\\win.ini"`, "win.ini"},
		{`attachment; filename=".."`, ""},
		{`attachment; filename="."`, ""},
		{`attachment; filename=".bashrc"`, "bashrc"},
		{`attachment; filename="a/"`, ""},
		{`attachment; filename="evil` + "\x00\x1b" + `.exe"`, "evil__.exe"},
		{`attachment; filename="gpj.` + "\u202e" + `exe"`, "gpj._exe"},
		{`attachment; filename="trail. . "`, "trail"},
		{`attachment; filename="CON.txt"`, "_CON.txt"},
		{`attachment; filename="a:b?.txt"`, "a_b_.txt"},
		{`attachment; filename="` + "\xff\xfe" + `"`, ""},
		{`attachment; filename=` + long, strings.Repeat("a", 255-len(".gz")) + ".gz"},
		{`attachment`, ""},
		{``, ""},
		{`attachment; filename=`, ""},
		{`attachment; filename="unterminated`, "unterminated"},
	} {
		if got := ParseContentDisposition(tc.in); got != tc.want {
			t.Errorf("ParseContentDisposition(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzParseContentDisposition(f *testing.F) {
	for _, s := range []string{
		`attachment; filename="report.pdf"`,
		`attachment; filename*=UTF-8''%e2%82%ac%20rates.txt`,
		`attachment; filename="../../etc/passwd"`,
		`inline; filename="a\"b"; filename*=iso-8859-1'en'%A3`,
		`attachment; filename=` + strings.Repeat("é", 200) + ".txt",
		"attachment; filename=\"\x00..\u202e\"",
		`;filename=CON`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		name := ParseContentDisposition(v)
		if name == "" {
			return
		}
		switch {
		case !utf8.ValidString(name):
			t.Fatalf("invalid UTF-8 %q", name)
		case len(name) > 255:
			t.Fatalf("%d bytes", len(name))
		case strings.ContainsAny(name, `/\`):
			t.Fatalf("path separator in %q", name)
		case strings.HasPrefix(name, "."), name == "..":
			t.Fatalf("leading dot in %q", name)
		}
		for _, r := range name {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || (r >= 0x202a && r <= 0x202e) {
				t.Fatalf("control character %U in %q", r, name)
			}
		}
		if again := SafeFileName(name); again != name {
			t.Fatalf("not idempotent: %q -> %q", name, again)
		}
	})
}

func ExampleParseContentDisposition() {
	fmt.Println(ParseContentDisposition(`attachment; filename="../../etc/passwd"`))
	fmt.Println(ParseContentDisposition(`attachment; filename*=UTF-8''%e2%82%ac%20rates.txt`))
	// Output:
	// passwd
	// € rates.txt
}
