package config_test

import (
	"strings"
	"testing"

	"github.com/dlflow/dlflow/config"
)

// TestLoadCachedParseIsolated loads one file's bytes again and again, as a
// batch does: what one load overrides must not reach the next (the parse
// is shared, the configuration is not), and new bytes under the same name
// are read, not the remembered ones.
func TestLoadCachedParseIsolated(t *testing.T) {
	const name = "shared.yaml"
	load := func(data string, sets ...string) *config.Config {
		t.Helper()
		cfg, err := config.Load(config.Options{File: name, Data: []byte(data), Environ: []string{}, Sets: sets})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	first := load(layeredYAML, "http.user_agent=set-agent", "stages.fetch.workers=7")
	if first.HTTP.UserAgent != "set-agent" || first.Stages["fetch"].Workers != 7 {
		t.Fatalf("first load: user agent %q, workers %d; want the --set values", first.HTTP.UserAgent, first.Stages["fetch"].Workers)
	}
	second := load(layeredYAML)
	if second.HTTP.UserAgent != "file-agent" || second.Stages["fetch"].Workers != 2 {
		t.Errorf("second load: user agent %q, workers %d; want the file's, not the first load's --set",
			second.HTTP.UserAgent, second.Stages["fetch"].Workers)
	}
	changed := load(strings.Replace(layeredYAML, "workers: 2", "workers: 5", 1))
	if changed.Stages["fetch"].Workers != 5 {
		t.Errorf("changed bytes under the same name: workers %d, want 5", changed.Stages["fetch"].Workers)
	}
	// A parse error is remembered with its position, and reported each time.
	for range 2 {
		lines := loadErrors(t, config.Options{File: name, Data: []byte("url: [unclosed\n")})
		if len(lines) != 1 || !strings.HasPrefix(lines[0], name+":") {
			t.Errorf("parse error %q, want one line naming %s", lines, name)
		}
	}
}
