package dlflow

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/dlflow/dlflow/pipeline"
)

// TestDefaultName covers how the output is named when -o is not given;
// the testscript download_noname case runs the same through the CLI.
func TestDefaultName(t *testing.T) {
	cases := []struct {
		res  pipeline.Resource
		want string
	}{
		{pipeline.Resource{URL: "http://h/dir/file.bin"}, "file.bin"},
		{pipeline.Resource{URL: "http://h/dir/file.bin?sig=abc#frag"}, "file.bin"},
		{pipeline.Resource{URL: "http://h/a%20b.iso"}, "a b.iso"},
		{pipeline.Resource{URL: "http://h/dir/file.bin", FileName: "server.tar"}, "server.tar"},
		{pipeline.Resource{URL: "http://h/"}, "download"},
		{pipeline.Resource{URL: "http://h"}, "download"},
		{pipeline.Resource{URL: "http://h/.."}, "download"},
		{pipeline.Resource{URL: "http://h/%2e%2e%2fetc%2fpasswd"}, "passwd"},
		// A name that a later command would take for an option.
		{pipeline.Resource{URL: "http://h/-rf"}, "_rf"},
		{pipeline.Resource{URL: "http://h/x", FileName: "--help"}, "_-help"},
		// Cut so that NAME.tmp.state.new still fits in 255 bytes,
		// keeping the extension.
		{pipeline.Resource{URL: "http://h/" + strings.Repeat("a", 250) + ".iso"}, strings.Repeat("a", 241-4) + ".iso"},
		{pipeline.Resource{URL: "http://h/" + strings.Repeat("é", 130)}, strings.Repeat("é", 120)},
	}
	for _, c := range cases {
		if got := defaultName(&c.res); got != c.want {
			t.Errorf("defaultName(%q, %q) = %q, want %q", c.res.URL, c.res.FileName, got, c.want)
		}
		if got := defaultName(&c.res); filepath.Base(got) != got {
			t.Errorf("defaultName(%q) = %q is a path, not a name", c.res.URL, got)
		}
	}
}
