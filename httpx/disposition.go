package httpx

import (
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxFileName is the common file system limit on a name, in bytes.
const maxFileName = 255

// ParseContentDisposition returns the file name that a Content-Disposition
// header value (RFC 6266) suggests, reduced to a safe base name, or "" when
// there is none or it is unusable. filename* (RFC 8187, UTF-8 or
// ISO-8859-1) wins over filename.
//
// The value is untrusted input that becomes a path on disk, so the result is
// never a path: only the part after the last / or \ is kept; control and
// bidirectional-override characters and the characters Windows forbids
// become "_"; leading dots and trailing dots and spaces are dropped (no
// hidden files, no "..", no "."); invalid UTF-8 is rejected; it is cut to
// 255 bytes, keeping a short extension.
func ParseContentDisposition(v string) (filename string) {
	var plain, ext string
	var haveExt bool
	rest := v
	// Skip the disposition type; parameters follow the first ';'.
	if i := strings.IndexByte(rest, ';'); i >= 0 {
		rest = rest[i+1:]
	} else {
		return ""
	}
	for rest != "" {
		var name, value string
		name, value, rest = nextDispositionParam(rest)
		switch strings.ToLower(name) {
		case "filename":
			if plain == "" {
				plain = value
			}
		case "filename*":
			if decoded, ok := decodeExtValue(value); ok && !haveExt {
				ext, haveExt = decoded, true
			}
		}
	}
	if haveExt {
		if name := SafeFileName(ext); name != "" {
			return name
		}
	}
	return SafeFileName(plain)
}

// nextDispositionParam splits the first `name=value` off s (which starts
// after a ';'), unquoting a quoted-string value. It is lenient the way
// browsers are: an unquoted value runs to the next ';', spaces included.
func nextDispositionParam(s string) (name, value, rest string) {
	s = strings.TrimLeft(s, " \t")
	eq := strings.IndexAny(s, "=;")
	if eq < 0 {
		return strings.TrimSpace(s), "", ""
	}
	if s[eq] == ';' {
		return strings.TrimSpace(s[:eq]), "", s[eq+1:]
	}
	name = strings.TrimSpace(s[:eq])
	s = strings.TrimLeft(s[eq+1:], " \t")
	if !strings.HasPrefix(s, `"`) {
		value, rest, _ = strings.Cut(s, ";")
		return name, strings.TrimRight(value, " \t"), rest
	}
	var b strings.Builder
	i := 1
	for ; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			i++
			b.WriteByte(s[i])
			continue
		}
		if c == '"' {
			i++
			break
		}
		b.WriteByte(c)
	}
	rest = s[i:]
	if j := strings.IndexByte(rest, ';'); j >= 0 {
		rest = rest[j+1:]
	} else {
		rest = ""
	}
	return name, b.String(), rest
}

// decodeExtValue decodes an RFC 8187 ext-value: charset'language'pct-encoded.
func decodeExtValue(v string) (string, bool) {
	v = strings.Trim(v, `"`) // some servers quote it, against the grammar
	charset, rest, ok := strings.Cut(v, "'")
	if !ok {
		return "", false
	}
	_, encoded, ok := strings.Cut(rest, "'")
	if !ok {
		return "", false
	}
	raw, err := url.PathUnescape(encoded)
	if err != nil {
		return "", false
	}
	switch strings.ToLower(charset) {
	case "utf-8":
		return raw, utf8.ValidString(raw)
	case "iso-8859-1":
		var b strings.Builder
		for i := 0; i < len(raw); i++ {
			b.WriteRune(rune(raw[i]))
		}
		return b.String(), true
	}
	return "", false
}

// SafeFileName reduces an untrusted name to a base name safe to create in
// the current directory, or "".
func SafeFileName(name string) string {
	if !utf8.ValidString(name) {
		return ""
	}
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		switch {
		case unicode.IsControl(r), r == unicode.ReplacementChar,
			r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f:
			return '_'
		case strings.ContainsRune(`<>:"|?*`, r):
			return '_'
		}
		return r
	}, name)
	name = strings.TrimLeft(name, ". ")
	name = strings.TrimRight(name, ". ")
	if name == "" {
		return ""
	}
	if len(name) > maxFileName {
		name = truncateName(name, maxFileName)
	}
	stem, _, _ := strings.Cut(name, ".")
	switch strings.ToUpper(strings.TrimSpace(stem)) {
	case "CON", "PRN", "AUX", "NUL",
		"COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9",
		"LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9":
		name = "_" + name
		if len(name) > maxFileName {
			name = truncateName(name, maxFileName)
		}
	}
	return name
}

// truncateName cuts name to limit bytes on a rune boundary, keeping an
// extension of up to 16 bytes.
func truncateName(name string, limit int) string {
	ext := ""
	if i := strings.LastIndexByte(name, '.'); i > 0 && len(name)-i <= 16 {
		ext = name[i:]
	}
	stem := name[:len(name)-len(ext)]
	limit -= len(ext)
	for limit > 0 && !utf8.RuneStart(stem[limit]) {
		limit--
	}
	stem = strings.TrimRight(stem[:limit], ". ")
	if stem == "" {
		return ""
	}
	return stem + ext
}
