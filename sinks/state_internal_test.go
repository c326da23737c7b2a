package sinks

import (
	"testing"
)

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
