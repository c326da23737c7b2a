package decompress

import (
	"errors"
	"strings"
	"testing"
)

// The default bomb guard: nothing below 1 GiB out, whatever the ratio;
// past it, more than 1000 times the input fails, naming the setting.
func TestCheckRatioDefault(t *testing.T) {
	cfg := decompressDef.Defaults
	ratio, after := cfg.MaxRatio, int64(cfg.RatioAfter)
	cases := []struct {
		in, out int64
		fail    bool
	}{
		{1, 1 << 30, false},                // 1 GiB of zeros from a byte: not past 1 GiB yet
		{1 << 20, 1<<30 + 1, true},         // 1024 times, past 1 GiB
		{2 << 20, 1<<30 + 1, false},        // 512 times
		{(4 << 30) / 1000, 4 << 30, false}, // exactly 1000 times
		{(4<<30)/1000 - 1, 4 << 30, true},
		{66 << 10, 2 << 30, true}, // 66 KB of zstd making 2 GiB
	}
	for _, c := range cases {
		err := checkRatio("decode", c.in, c.out, ratio, after)
		if (err != nil) != c.fail {
			t.Errorf("in %d out %d: err %v, want failure %v", c.in, c.out, err, c.fail)
		}
		if err != nil && (!errors.Is(err, ErrRatio) || !strings.Contains(err.Error(), "stages.decode.config.max_ratio")) {
			t.Errorf("err %v, want ErrRatio naming the setting", err)
		}
	}
	if err := checkRatio("decode", 1, 1<<40, 0, after); err != nil {
		t.Errorf("max_ratio 0: %v", err)
	}
}
