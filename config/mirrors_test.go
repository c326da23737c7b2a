package config_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/dlflow/dlflow/config"
)

func TestLoadURLList(t *testing.T) {
	tests := []struct {
		name, yaml string
		url        string
		mirrors    []string
	}{
		{"list", "url: [https://a.example/f, https://b.example/f]\n", "https://a.example/f", []string{"https://b.example/f"}},
		{"list and mirrors", "url:\n  - https://a.example/f\n  - https://b.example/f\nmirrors: [https://c.example/f]\n",
			"https://a.example/f", []string{"https://b.example/f", "https://c.example/f"}},
		{"string", "url: https://a.example/f\nmirrors: [https://c.example/f]\n", "https://a.example/f", []string{"https://c.example/f"}},
		{"no mirrors", "url: https://a.example/f\n", "https://a.example/f", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := writeFile(t, "dl.yaml", tt.yaml)
			cfg, err := config.Load(config.Options{File: file, Environ: []string{}, StagesOptional: true})
			if err != nil {
				t.Fatal(err)
			}
			if cfg.URL != tt.url || !slices.Equal(cfg.Mirrors, tt.mirrors) {
				t.Fatalf("url %q mirrors %q, want %q %q", cfg.URL, cfg.Mirrors, tt.url, tt.mirrors)
			}
		})
	}
	file := writeFile(t, "dl.yaml", "url: [{a: 1}]\n")
	_, err := config.Load(config.Options{File: file, Environ: []string{}, StagesOptional: true})
	if err == nil || !strings.Contains(err.Error(), "url") {
		t.Fatalf("a list of maps: %v, want an error naming url", err)
	}
}
