package sinks

import (
	"strconv"
	"strings"
)

// contentETag reports whether etag, the ETag of a resource of size bytes,
// can be a digest of the content (S3's MD5, a SHA-256) rather than a name
// of one version of one resource. Only such an ETag proves that a partial
// download of another URL holds the same bytes: a short ETag ("e1", "v1",
// a version number) names a version of one resource, and two resources
// may well be at version "e1"; and two files of one size written in the
// same second share a metadata ETag.
//
// So it must be long enough for a digest of at least 128 bits (see
// digestSized), and not of a form that common servers derive from
// metadata even at that length:
//
//   - nginx: "mtime-size", both in hex ("5f1e2d3c-100000");
//   - Apache: "size-mtime" or "inode-size-mtime", all in hex (FileETag
//     MTime Size, the default, or with INode);
//   - IIS: "filetime:changenumber" in hex ("0a7cc6cba9bd91:0");
//   - Caddy: the Unix time in base 36 followed by the size in base 36.
//
// The first two are recognised by two or three hex parts of which one is
// the size, so a hash that happens to contain a hyphen (an S3 multipart
// ETag, "md5-parts") is not mistaken for them. A weak ETag (W/...) or an
// unquoted one names nothing exact.
func contentETag(etag string, size int64) bool {
	v, ok := strings.CutPrefix(etag, `"`)
	if !ok {
		return false // weak (W/"...") or malformed
	}
	v, ok = strings.CutSuffix(v, `"`)
	if !ok || v == "" {
		return false
	}
	return digestSized(v) && !metadataETag(v, size)
}

// digestSized reports whether v, an ETag without its quotes, holds a
// string long enough to be a digest of at least 128 bits: 32 hex digits in
// a row (an MD5; an S3 multipart ETag is one followed by "-N"), or 22
// characters of base64, standard or URL-safe, in a row, some of them not
// hex (22 hex digits and hyphens are only 88 bits).
func digestSized(v string) bool {
	hexRun, b64Run, notHex := 0, 0, false
	for _, c := range []byte(v) {
		switch {
		case isHexByte(c):
			hexRun++
			b64Run++
		case c == '-':
			hexRun = 0
			b64Run++
		case 'g' <= c && c <= 'z' || 'G' <= c && c <= 'Z' || c == '+' || c == '/' || c == '_':
			hexRun, notHex = 0, true
			b64Run++
		default: // padding ('=') too ends a run
			hexRun, b64Run, notHex = 0, 0, false
		}
		if hexRun >= 32 || b64Run >= 22 && notHex {
			return true
		}
	}
	return false
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
		if !isHexByte(c) {
			return false
		}
	}
	return true
}

func isHexByte(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
