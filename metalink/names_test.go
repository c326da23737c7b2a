package metalink

import (
	"strings"
	"testing"

	"github.com/dlflow/dlflow/httpx"
)

// TestParseCleansNames: a file name from a Metalink is cleaned as a
// Content-Disposition name is: no leading dot (a hidden file such as
// .bashrc), no right-to-left override that disguises the extension, no
// directory.
func TestParseCleansNames(t *testing.T) {
	for _, tt := range []struct{ name, want string }{
		{".bashrc", "bashrc"},
		{"../.profile", "profile"},
		{"invoice\u202Efdp.exe", "invoice_fdp.exe"},
		{`C:\Windows\evil.dll`, "evil.dll"},
		{"CON.txt", "_CON.txt"},
		{"..", ""},
		{"big.iso", "big.iso"},
	} {
		doc := `<metalink><file name="` + tt.name + `"><url>http://x/</url></file></metalink>`
		f, err := Parse(strings.NewReader(doc), "")
		if err != nil {
			t.Fatalf("%q: %v", tt.name, err)
		}
		if f.Name != tt.want || f.Name != httpx.SafeFileName(tt.name) {
			t.Errorf("name %q became %q, want %q (as httpx.SafeFileName)", tt.name, f.Name, tt.want)
		}
	}
}
