package httpx

import (
	"fmt"
	"strconv"
	"testing"
)

func TestParseContentRange(t *testing.T) {
	for _, tc := range []struct {
		in                string
		start, end, total int64
	}{
		{"bytes 0-499/1234", 0, 499, 1234},
		{"bytes 0-0/1", 0, 0, 1},
		{"BYTES 10-19/*", 10, 19, -1},
		{"  bytes  5-5/6 ", 5, 5, 6},
		{"bytes */1234", -1, -1, 1234},
		{"bytes */0", -1, -1, 0},
		{"bytes 0-999999999999999998/999999999999999999", 0, 999999999999999998, 999999999999999999},
	} {
		s, e, n, err := ParseContentRange(tc.in)
		if err != nil || s != tc.start || e != tc.end || n != tc.total {
			t.Errorf("ParseContentRange(%q) = %d, %d, %d, %v; want %d, %d, %d", tc.in, s, e, n, err, tc.start, tc.end, tc.total)
		}
	}
	for _, in := range []string{
		"", "bytes", "bytes ", "bytes=0-1/2", "items 0-1/2", "bytes0-1/2",
		"bytes 0-1", "bytes 0-1/", "bytes -1-2/3", "bytes 1-0/5", "bytes 0-5/5",
		"bytes */*", "bytes 0-1/*/3", "bytes +0-1/2", "bytes 0x1-2/3", "bytes 0 -1/2",
		"bytes 0-1/ 2", "bytes 1-2-3/4", "bytes 0-9223372036854775807/9223372036854775808",
		"bytes 0-1,2-3/4", "bytes -/4", "bytes 0-/4",
	} {
		if s, e, n, err := ParseContentRange(in); err == nil {
			t.Errorf("ParseContentRange(%q) = %d, %d, %d, want an error", in, s, e, n)
		}
	}
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-499/1234", "bytes 10-19/*", "bytes */1234", "bytes 1-0/5", "bytes 0-1/", "Bytes\t7-7/8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		start, end, total, err := ParseContentRange(v)
		if err != nil {
			return
		}
		switch {
		case start == -1 && end == -1:
			if total < 0 {
				t.Fatalf("%q: unsatisfied form without a length", v)
			}
		case start < 0 || end < start || (total >= 0 && end >= total) || total < -1:
			t.Fatalf("%q: inconsistent %d-%d/%d", v, start, end, total)
		}
		// The canonical form parses to the same values.
		canon := "bytes "
		if start < 0 {
			canon += "*"
		} else {
			canon += fmt.Sprintf("%d-%d", start, end)
		}
		if total < 0 {
			canon += "/*"
		} else {
			canon += "/" + strconv.FormatInt(total, 10)
		}
		s2, e2, n2, err := ParseContentRange(canon)
		if err != nil || s2 != start || e2 != end || n2 != total {
			t.Fatalf("%q -> %q -> %d, %d, %d, %v", v, canon, s2, e2, n2, err)
		}
	})
}

func ExampleParseContentRange() {
	fmt.Println(ParseContentRange("bytes 0-499/1234"))
	fmt.Println(ParseContentRange("bytes */1234"))
	_, _, _, err := ParseContentRange("bytes 500-100/1234")
	fmt.Println(err)
	// Output:
	// 0 499 1234 <nil>
	// -1 -1 1234 <nil>
	// invalid Content-Range "bytes 500-100/1234": first byte after last byte
}
