package pipeline

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ByteSize is a number of bytes that config files write as "16MiB", "4M",
// "1.5GiB" or "1024". Binary (KiB, MiB, GiB, TiB) and decimal (kB, MB, GB,
// TB) units are both accepted; a bare K, M, G or T is binary, as in curl's
// and aria2's options.
type ByteSize int64

var byteUnits = map[string]float64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
}

// ParseByteSize parses a size such as "16MiB". Negative sizes, fractions of
// a byte and sizes beyond int64 are errors.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	split := len(t)
	for split > 0 && !(t[split-1] >= '0' && t[split-1] <= '9' || t[split-1] == '.') {
		split--
	}
	num, unit := t[:split], strings.ToLower(strings.TrimSpace(t[split:]))
	mult, ok := byteUnits[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("invalid byte size %q: want a number with an optional unit such as 512KiB, 16MiB or 2GB", s)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("invalid byte size %q: want a non-negative number", s)
	}
	bytes := v * mult
	if bytes >= math.MaxInt64 {
		return 0, fmt.Errorf("invalid byte size %q: too large", s)
	}
	if bytes != math.Trunc(bytes) {
		return 0, fmt.Errorf("invalid byte size %q: not a whole number of bytes", s)
	}
	return ByteSize(bytes), nil
}

// UnmarshalText implements encoding.TextUnmarshaler for config decoding.
func (b *ByteSize) UnmarshalText(text []byte) error {
	v, err := ParseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// MarshalText implements encoding.TextMarshaler. It is exact: a size that
// String can only approximate is written as a plain number of bytes.
func (b ByteSize) MarshalText() ([]byte, error) {
	s := b.String()
	if strings.HasPrefix(s, "~") {
		s = strconv.FormatInt(int64(b), 10)
	}
	return []byte(s), nil
}

// String formats the size with the largest binary unit that divides it
// exactly ("16MiB"), or with one decimal when none does ("1.5MiB" is exact,
// "~1.3MiB" is not).
func (b ByteSize) String() string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	v := int64(b)
	if v < 1024 {
		return strconv.FormatInt(v, 10) + "B"
	}
	i := 0
	for v%1024 == 0 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i > 0 && (v < 1024 || i == len(units)-1) {
		return strconv.FormatInt(v, 10) + units[i]
	}
	f := float64(b)
	i = 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	s := strconv.FormatFloat(f, 'f', 1, 64) + units[i]
	if back, err := ParseByteSize(s); err != nil || back != b {
		s = "~" + s
	}
	return s
}
