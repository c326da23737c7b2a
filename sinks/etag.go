package sinks

import (
	"strconv"
	"strings"
)

// contentETag reports whether etag, the ETag of a resource of size bytes,
// may name the content itself (a hash, a version id) rather than the
// metadata of the file the server read it from. Only such an ETag proves
// that a partial download of another URL holds the same bytes: two files
// of one size written in the same second share a metadata ETag.
//
// A weak ETag (W/...) or an unquoted one names nothing exact. The forms
// that common servers derive from metadata, and that this refuses, are:
//
//   - nginx: "mtime-size", both in hex ("5f1e2d3c-100000");
//   - Apache: "size-mtime" or "inode-size-mtime", all in hex (FileETag
//     MTime Size, the default, or with INode);
//   - IIS: "filetime:changenumber" in hex ("0a7cc6cba9bd91:0");
//   - Caddy: the Unix time in base 36 followed by the size in base 36.
//
// The first two are recognised by two or three hex parts of which one is
// the size, so a hash that happens to contain a hyphen (an S3 multipart
// ETag, "md5-parts") is not mistaken for them. Anything else is taken to
// name the content: a server with another metadata form is not detected.
func contentETag(etag string, size int64) bool {
	v, ok := strings.CutPrefix(etag, `"`)
	if !ok {
		return false // weak (W/"...") or malformed
	}
	v, ok = strings.CutSuffix(v, `"`)
	if !ok || v == "" {
		return false
	}
	return !metadataETag(v, size)
}

// metadataETag reports whether v, an ETag without its quotes, has one of
// the forms contentETag lists.
func metadataETag(v string, size int64) bool {
	if parts := strings.Split(v, "-"); len(parts) == 2 || len(parts) == 3 {
		allHex, sizeAmong := true, false
		for _, p := range parts {
			n, err := strconv.ParseUint(p, 16, 64)
			allHex = allHex && err == nil
			sizeAmong = sizeAmong || err == nil && size >= 0 && n == uint64(size)
		}
		if allHex && sizeAmong {
			return true
		}
	}
	if a, b, ok := strings.Cut(v, ":"); ok && isHex(a) && isHex(b) {
		return true
	}
	if size >= 0 {
		// Caddy's Unix time takes 6 base-36 digits until 2038, then 7.
		if t, ok := strings.CutSuffix(v, strconv.FormatInt(size, 36)); ok && len(t) >= 5 && len(t) <= 7 {
			if _, err := strconv.ParseUint(t, 36, 64); err == nil {
				return true
			}
		}
	}
	return false
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
