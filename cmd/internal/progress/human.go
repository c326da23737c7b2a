package progress

import (
	"fmt"
	"math"
)

// Rate formats bytes per second.
func Rate(bytesPerSec float64) string {
	return Bytes(bytesPerSec) + "/s"
}

// Bytes formats a byte count with a binary unit and one decimal:
// "512 B", "1.5 KiB", "200.0 MiB".
func Bytes(n float64) string {
	if n < 1024 {
		return fmt.Sprintf("%.0f B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB"}
	i := -1
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}

// ETA renders seconds as "42s", "3m05s" or "2h03m".
func ETA(sec float64) string {
	if math.IsInf(sec, 0) || math.IsNaN(sec) || sec > 99*3600 {
		return "--"
	}
	s := int64(math.Ceil(sec))
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	default:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
}
