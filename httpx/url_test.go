package httpx

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckURL(t *testing.T) {
	for _, tc := range []struct{ in, err string }{
		{"http://h:8080/f", ""},
		{"https://u:secret@h/f", ""},
		{"http://h:99999/f", "port 99999 is not between 1 and 65535"},
		{"http://h:0/f", "port 0 is not between 1 and 65535"},
		{"ftp://h/f", "the scheme must be http or https"},
		{"http:///f", "no host"},
		{"https://u:secret@h:70000/f", `"https://u:xxxxx@h:70000/f": port 70000`},
	} {
		_, err := CheckURL(tc.in)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("CheckURL(%q): %v", tc.in, err)
		case tc.err != "" && (!errors.Is(err, ErrInvalidURL) || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("CheckURL(%q): %v, want ErrInvalidURL with %q", tc.in, err, tc.err)
		}
	}
}
