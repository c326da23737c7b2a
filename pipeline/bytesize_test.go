package pipeline_test

import (
	"strings"
	"testing"

	"github.com/dlflow/dlflow/pipeline"
)

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want pipeline.ByteSize
	}{
		{"16MiB", 16 << 20},
		{"4M", 4 << 20},
		{"4m", 4 << 20},
		{"1.5GiB", 3 << 29},
		{"1kB", 1000},
		{"2GB", 2e9},
		{"1024", 1024},
		{"0", 0},
		{"512B", 512},
		{" 2 GiB ", 2 << 30},
		{"8TiB", 8 << 40},
		{".5K", 512},
	}
	for _, tt := range tests {
		got, err := pipeline.ParseByteSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseByteSizeErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `invalid byte size "": want a number with an optional unit such as 512KiB, 16MiB or 2GB`},
		{"MiB", `invalid byte size "MiB": want a number with an optional unit such as 512KiB, 16MiB or 2GB`},
		{"12XB", `invalid byte size "12XB": want a number with an optional unit such as 512KiB, 16MiB or 2GB`},
		{"-1", `invalid byte size "-1": want a non-negative number`},
		{"1.2.3", `invalid byte size "1.2.3": want a non-negative number`},
		{"1.5B", `invalid byte size "1.5B": not a whole number of bytes`},
		{"0.3KiB", `invalid byte size "0.3KiB": not a whole number of bytes`},
		{"8388608TiB", `invalid byte size "8388608TiB": too large`},
		{"9223372036854775807", `invalid byte size "9223372036854775807": too large`},
		{"1e400", `invalid byte size "1e400": want a non-negative number`},
	}
	for _, tt := range tests {
		got, err := pipeline.ParseByteSize(tt.in)
		if err == nil {
			t.Errorf("ParseByteSize(%q) = %d, want an error", tt.in, got)
		} else if err.Error() != tt.want {
			t.Errorf("ParseByteSize(%q) error:\n got %s\nwant %s", tt.in, err, tt.want)
		}
	}
}

func TestByteSizeString(t *testing.T) {
	tests := []struct {
		in   pipeline.ByteSize
		want string
	}{
		{0, "0B"},
		{1023, "1023B"},
		{1024, "1KiB"},
		{64 << 10, "64KiB"},
		{16 << 20, "16MiB"},
		{3 << 29, "1.5GiB"},
		{1536 << 10, "1.5MiB"},
		{4 << 40, "4TiB"},
		{2048 << 40, "2048TiB"},
		{1025, "~1.0KiB"},
		{1363149, "~1.3MiB"}, // 1.3MiB rounded to a byte,
		{6400 << 10, "~6.2MiB"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
		text, err := tt.in.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back pipeline.ByteSize
		if err := back.UnmarshalText(text); err != nil || back != tt.in {
			t.Errorf("ByteSize(%d) marshals to %q, which unmarshals to %d, %v", int64(tt.in), text, back, err)
		}
		if exact := !strings.HasPrefix(tt.want, "~"); exact != (string(text) == tt.want) {
			t.Errorf("ByteSize(%d) marshals to %q; want String() when exact, a byte count otherwise", int64(tt.in), text)
		}
	}
}

func TestByteSizeUnmarshalTextKeepsValueOnError(t *testing.T) {
	b := pipeline.ByteSize(42)
	if err := b.UnmarshalText([]byte("lots")); err == nil || b != 42 {
		t.Errorf("UnmarshalText(lots) = %v, left %d; want an error and 42", err, b)
	}
}

func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{
		"16MiB", "4M", "1.5GiB", "1kB", "1024", " 2 GiB ", "", "-1", "1.5B", "12XB",
		"9223372036854775807", "8388608TiB", "1e3", "0x10", ".5k", "5.", "1e-400", "NaN", "+Inf", "1 0 MiB",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := pipeline.ParseByteSize(s)
		if err != nil {
			if v != 0 {
				t.Errorf("ParseByteSize(%q) = %d with error %v, want 0", s, v, err)
			}
			return
		}
		if v < 0 {
			t.Fatalf("ParseByteSize(%q) = %d, negative", s, v)
		}
		str := v.String()
		if !strings.HasPrefix(str, "~") {
			back, err := pipeline.ParseByteSize(str)
			if err != nil || back != v {
				t.Errorf("ParseByteSize(%q) = %d, whose String %q parses to %d, %v", s, v, str, back, err)
			}
		}
		text, _ := v.MarshalText()
		var back pipeline.ByteSize
		if err := back.UnmarshalText(text); err != nil || back != v {
			t.Errorf("ParseByteSize(%q) = %d, which marshals to %q and unmarshals to %d, %v", s, v, text, back, err)
		}
	})
}
