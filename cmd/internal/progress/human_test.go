package progress

import (
	"math"
	"testing"
)

func TestHuman(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{Bytes(0), "0 B"},
		{Bytes(1023), "1023 B"},
		{Bytes(1536), "1.5 KiB"},
		{Bytes(200 << 20), "200.0 MiB"},
		{Bytes(3 << 50), "3.0 PiB"},
		{Bytes(5 << 60), "5120.0 PiB"},
		{Rate(20.4 * (1 << 20)), "20.4 MiB/s"},
		{ETA(0), "0s"},
		{ETA(41.2), "42s"},
		{ETA(185), "3m05s"},
		{ETA(7380), "2h03m"},
		{ETA(100 * 3600), "--"},
		{ETA(math.Inf(1)), "--"},
		{ETA(math.NaN()), "--"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
