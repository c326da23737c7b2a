package sinks

import (
	"testing"
)

func TestContentETag(t *testing.T) {
	const size = 1048576 // 0x100000, "mh34" in base 36
	for _, tc := range []struct {
		etag string
		want bool
	}{
		{`"5f1e2d3c-100000"`, false},                    // nginx: mtime-size
		{`"100000-5f1e2d3c4b5a6"`, false},               // Apache: size-mtime
		{`"2a1b3c-100000-5f1e2d3c4b5a6"`, false},        // Apache with INode
		{`"0a7cc6cba9bd91:0"`, false},                   // IIS
		{`"s44we8mh34"`, false},                         // Caddy: base-36 time and size
		{`W/"9e107d9d372bb6826bd81d3542a419d6"`, false}, // weak
		{`9e107d9d372bb6826bd81d3542a419d6`, false},     // unquoted
		{`""`, false},
		{``, false},
		{`"9e107d9d372bb6826bd81d3542a419d6"`, true},    // MD5 (S3)
		{`"9e107d9d372bb6826bd81d3542a419d6-12"`, true}, // S3 multipart
		{`"5f1e2d3c-fffff"`, true},                      // two hex parts, neither the size
		{`"0x8DB5F0C8E3C8A5B"`, true},                   // Azure
		{`"v1"`, true},
		{`"sha256-n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg"`, true},
	} {
		if got := contentETag(tc.etag, size); got != tc.want {
			t.Errorf("contentETag(%s, %d) = %v, want %v", tc.etag, size, got, tc.want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://u:p@h.test/a/b?sig=1&x=2#f": "https://h.test/a/b",
		"http://token@h.test:8080/f":         "http://h.test:8080/f",
		"http://h.test/f?":                   "http://h.test/f",
		"http://h.test/%zz":                  "",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
