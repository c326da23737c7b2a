package httpx

import (
	"errors"
	"fmt"
	"strings"
)

// errBadContentRange is wrapped by every error of ParseContentRange.
var errBadContentRange = errors.New("invalid Content-Range")

// ParseContentRange parses the value of a Content-Range response header
// (RFC 9110, section 14.4) in one of its three forms:
//
//	bytes 0-499/1234   start 0, end 499, total 1234
//	bytes 0-499/*      total -1: the server does not know the length
//	bytes */1234       start and end -1: the unsatisfied-range form of a 416
//
// End is inclusive, as on the wire. Validation is strict because the result
// decides where bytes are written: the unit must be "bytes", numbers are
// plain decimal digits that fit an int64, start <= end, and end < total when
// the total is known. Anything else is an error.
func ParseContentRange(v string) (start, end, total int64, err error) {
	fail := func(why string) (int64, int64, int64, error) {
		return 0, 0, 0, fmt.Errorf("%w %q: %s", errBadContentRange, v, why)
	}
	s := strings.Trim(v, " \t")
	const unit = "bytes"
	if len(s) <= len(unit) || !strings.EqualFold(s[:len(unit)], unit) || (s[len(unit)] != ' ' && s[len(unit)] != '\t') {
		return fail(`want "bytes first-last/length"`)
	}
	s = strings.TrimLeft(s[len(unit):], " \t")

	rng, length, ok := strings.Cut(s, "/")
	if !ok {
		return fail("missing /length")
	}
	total = -1
	if length != "*" {
		if total, ok = parseCRDecimal(length); !ok {
			return fail("length is not a decimal number")
		}
	}
	if rng == "*" {
		if total < 0 {
			return fail("neither range nor length is known")
		}
		return -1, -1, total, nil
	}
	first, last, ok := strings.Cut(rng, "-")
	if !ok {
		return fail("range has no '-'")
	}
	if start, ok = parseCRDecimal(first); !ok {
		return fail("first byte is not a decimal number")
	}
	if end, ok = parseCRDecimal(last); !ok {
		return fail("last byte is not a decimal number")
	}
	switch {
	case start > end:
		return fail("first byte after last byte")
	case total >= 0 && end >= total:
		return fail("last byte beyond length")
	}
	return start, end, total, nil
}

// parseCRDecimal accepts only ASCII digits (no sign, no spaces, no "0x"), up
// to 18 of them so that the value and value+1 fit an int64.
func parseCRDecimal(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
