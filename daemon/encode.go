package daemon

import (
	"encoding/json"
	"unicode/utf8"
)

// A hand-written encoder for the status of many tasks: tellActive over
// 1,000 tasks through encoding/json's maps spent most of its time
// sorting keys and reflecting; this writes the same JSON (keys sorted,
// strings escaped as encoding/json does, invalid UTF-8 as U+FFFD) in a
// fraction of it.

// kv is one field of a status: a string, or a list of files.
type kv struct {
	k string
	v any // string or []fileEntry
}

type fileEntry struct {
	path, length, done string
	uris               []uriEntry
}

type uriEntry struct{ uri, status string }

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// appendObject appends fields, whose keys are sorted, as a JSON object.
func appendObject(b []byte, fields []kv) []byte {
	b = append(b, '{')
	for i, f := range fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, f.k)
		b = append(b, ':')
		switch v := f.v.(type) {
		case string:
			b = appendString(b, v)
		case []fileEntry:
			b = appendFiles(b, v)
		}
	}
	return append(b, '}')
}

func appendFiles(b []byte, files []fileEntry) []byte {
	b = append(b, '[')
	for i, f := range files {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"completedLength":`...)
		b = appendString(b, f.done)
		b = append(b, `,"index":"1","length":`...)
		b = appendString(b, f.length)
		b = append(b, `,"path":`...)
		b = appendString(b, f.path)
		b = append(b, `,"selected":"true","uris":[`...)
		for j, u := range f.uris {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"status":`...)
			b = appendString(b, u.status)
			b = append(b, `,"uri":`...)
			b = appendString(b, u.uri)
			b = append(b, '}')
		}
		b = append(b, "]}"...)
	}
	return append(b, ']')
}

// fieldsMap turns fields into a map, for payloads that add to them.
func fieldsMap(fields []kv) map[string]any {
	m := make(map[string]any, len(fields)+2)
	for _, f := range fields {
		if files, ok := f.v.([]fileEntry); ok {
			m[f.k] = json.RawMessage(appendFiles(nil, files))
		} else {
			m[f.k] = f.v
		}
	}
	return m
}
