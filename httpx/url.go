package httpx

import (
	"fmt"
	"net/url"
	"strconv"
)

// CheckURL parses rawURL and refuses what cannot be downloaded: a scheme
// other than http and https, no host, a port outside 1-65535. Its error
// wraps ErrInvalidURL and shows the URL redacted.
func CheckURL(rawURL string) (*url.URL, error) {
	u, err := checkURL(rawURL)
	if err != nil {
		return nil, err
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%w %q: port %s is not between 1 and 65535", ErrInvalidURL, RedactURL(rawURL), p)
		}
	}
	return u, nil
}

// CutName shortens a file name to at most limit bytes, on a rune boundary,
// keeping an extension of up to 16 bytes; names that fit are returned as
// they are. It returns "" when nothing but the extension would be left.
func CutName(name string, limit int) string {
	if len(name) <= limit {
		return name
	}
	return truncateName(name, limit)
}
