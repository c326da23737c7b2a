package httpx

import "net/url"

// CheckURL parses rawURL and refuses what cannot be downloaded: a scheme
// other than http and https, or no host. Its error wraps ErrInvalidURL and
// shows the URL redacted.
func CheckURL(rawURL string) (*url.URL, error) { return checkURL(rawURL) }

// CutName shortens a file name to at most limit bytes, on a rune boundary,
// keeping an extension of up to 16 bytes; names that fit are returned as
// they are. It returns "" when nothing but the extension would be left.
func CutName(name string, limit int) string {
	if len(name) <= limit {
		return name
	}
	return truncateName(name, limit)
}
