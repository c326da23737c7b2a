package dlflow

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseListLine(t *testing.T) {
	for _, tc := range []struct {
		in        string
		url, name string
		ok        bool
	}{
		{"", "", "", false},
		{" \t ", "", "", false},
		{"# http://x/y", "", "", false},
		{"  # comment", "", "", false},
		{"http://x/y", "http://x/y", "", true},
		{"http://x/y\r", "http://x/y", "", true},
		{"\ufeffhttp://x/y", "http://x/y", "", true},
		{"  http://x/y   out.bin  ", "http://x/y", "out.bin", true},
		{"http://x/y\tmy file.bin", "http://x/y", "my file.bin", true},
		{"http://x/y#frag name", "http://x/y#frag", "name", true},
	} {
		e, ok := parseListLine(3, tc.in)
		if ok != tc.ok || e.URL != tc.url || e.Name != tc.name || ok && e.Line != 3 {
			t.Errorf("parseListLine(%q) = %+v, %v; want %q %q %v", tc.in, e, ok, tc.url, tc.name, tc.ok)
		}
	}
}

// Shards of one list take each entry exactly once, in order, counting
// entries (not lines) from 0.
func TestReadListShards(t *testing.T) {
	list := "# a list\n\nhttp://h/0\nhttp://h/1 one\n  # note\nhttp://h/2\nhttp://h/3\nhttp://h/4\n"
	seen := map[string]int{}
	for k := range 3 {
		var got []string
		err := ReadList(strings.NewReader(list), Shard{Index: k, Count: 3}, func(e ListEntry) bool {
			got = append(got, e.URL)
			seen[e.URL]++
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		want := map[int][]string{0: {"http://h/0", "http://h/3"}, 1: {"http://h/1", "http://h/4"}, 2: {"http://h/2"}}[k]
		if !slices.Equal(got, want) {
			t.Errorf("shard %d/3: %q, want %q", k, got, want)
		}
	}
	if len(seen) != 5 {
		t.Errorf("entries seen %v, want each of 5 once", seen)
	}
	var n int
	if err := ReadList(strings.NewReader(list), Shard{}, func(ListEntry) bool { n++; return n < 2 }); err != nil || n != 2 {
		t.Errorf("stopped at %d entries (%v), want 2", n, err)
	}
	long := "http://h/" + strings.Repeat("x", MaxListLine) + "\n"
	if err := ReadList(strings.NewReader(long), Shard{}, func(ListEntry) bool { return true }); !errors.Is(err, ErrListLineTooLong) {
		t.Errorf("a line too long: %v", err)
	}
}

func TestParseShard(t *testing.T) {
	for _, tc := range []struct {
		in, env string
		want    Shard
		err     string
	}{
		{"0/4", "", Shard{0, 4}, ""},
		{" 3/4 ", "", Shard{3, 4}, ""},
		{"4/4", "", Shard{}, "0 <= K < N"},
		{"-1/4", "", Shard{}, "0 <= K < N"},
		{"a/4", "", Shard{}, "whole numbers"},
		{"10", "7", Shard{7, 10}, ""},
		{"10", "", Shard{}, "JOB_COMPLETION_INDEX"},
		{"10", "10", Shard{}, "0 <= K < N"},
	} {
		t.Setenv("JOB_COMPLETION_INDEX", tc.env)
		got, err := ParseShard(tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("ParseShard(%q) with index %q = %+v, %v; want %+v", tc.in, tc.env, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseShard(%q) with index %q: error %v, want one with %q", tc.in, tc.env, err, tc.err)
		}
	}
}
