package sinks

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/dlflow/dlflow/pipeline"
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
		{`"sha256-n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg"`, true},
		{`"CY9rzUYh03PK3k6DJie09g=="`, true}, // an MD5 in base64 (22 characters and padding)
		{`"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"`, true},
		// Shorter than a 128-bit digest: a version of one resource.
		{`"e1"`, false},
		{`"v1"`, false},
		{`"5f1e2d3c-fffff"`, false},                     // two hex parts, neither the size
		{`"0x8DB5F0C8E3C8A5B"`, false},                  // Azure
		{`"CKih16GjycICEAE="`, false},                   // Google Cloud Storage's generation
		{`"9e107d9d372bb6826bd81d3542a419d"`, false},    // 31 hex digits
		{`"9e107d9d-372bb682-6bd81d35-42a419d"`, false}, // 31 hex digits and hyphens
		{`"CY9rzUYh03PK3k6DJie09"`, false},              // 21 base64 characters
	} {
		if got := contentETag(tc.etag, size); got != tc.want {
			t.Errorf("contentETag(%s, %d) = %v, want %v", tc.etag, size, got, tc.want)
		}
	}
}

func TestCoarsen(t *testing.T) {
	const k = minStateRange
	r := func(start, end int64) pipeline.Range { return pipeline.Range{Start: start, End: end} }
	many := func(n int, length int64) []pipeline.Range {
		var out []pipeline.Range
		for i := range int64(n) {
			out = append(out, r((2*i+1)*k*4, (2*i+1)*k*4+length))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		in   []pipeline.Range
		want []pipeline.Range
	}{
		{"empty", nil, []pipeline.Range{}},
		{"short prefix kept", []pipeline.Range{r(0, 10)}, []pipeline.Range{r(0, 10)}},
		{"short others dropped", []pipeline.Range{r(0, 10), r(k, k+10), r(3*k, 4*k)}, []pipeline.Range{r(0, 10), r(3*k, 4*k)}},
		{"at the cap", many(maxStateRanges, k), many(maxStateRanges, k)},
		{"the largest kept", append(many(maxStateRanges, k), r(1<<40, 1<<40+2*k)),
			append(many(maxStateRanges-1, k), r(1<<40, 1<<40+2*k))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := coarsen(tc.in)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("coarsen: %d ranges %s, want %d %s", len(got), head(got), len(tc.want), head(tc.want))
			}
		})
	}
	// Never more than the cap, prefix included, in offset order.
	in := append([]pipeline.Range{r(0, 1)}, many(3*maxStateRanges, k)...)
	got := coarsen(in)
	if len(got) != maxStateRanges+1 || got[0] != r(0, 1) {
		t.Fatalf("coarsen of %d ranges: %d, first %v", len(in), len(got), got[0])
	}
	for i := 1; i < len(got); i++ {
		if got[i].Start <= got[i-1].End {
			t.Fatalf("not in offset order at %d: %v %v", i, got[i-1], got[i])
		}
	}
}

func head(rs []pipeline.Range) string {
	if len(rs) > 3 {
		return fmt.Sprint(rs[:3], "...")
	}
	return fmt.Sprint(rs)
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
