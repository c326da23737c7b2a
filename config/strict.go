// Package config loads and validates dlflow configuration.
package config

import (
	"encoding"
	"fmt"
	"maps"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Position is where something was written in a config file. The zero
// Position means "unknown".
type Position struct {
	File      string
	Line, Col int // 1-based; 0 when unknown
}

// String renders p as "FILE:LINE:COL", leaving out the parts that are
// unknown; it is "" for the zero Position.
func (p Position) String() string {
	s := p.File
	if p.Line > 0 {
		s += ":" + strconv.Itoa(p.Line)
		if p.Col > 0 {
			s += ":" + strconv.Itoa(p.Col)
		}
	}
	return strings.TrimPrefix(s, ":")
}

// KeyError is one problem with one config key.
type KeyError struct {
	Key string   // dotted key path, e.g. "stages.fetch.config.piece"; "" for the whole document
	Pos Position // where the key was written; zero when unknown
	Msg string   // lowercase, e.g. `want an integer, got "eight"`
}

// Error renders the error as "FILE:LINE:COL: KEY: MSG", leaving out the
// position when it is unknown and the key when it is empty or the
// position (a flag, a --set) names it.
func (e *KeyError) Error() string {
	var b strings.Builder
	p := e.Pos.String()
	if p != "" {
		b.WriteString(p + ": ")
	}
	// A --set position already names the key, and so does a flag (each
	// sets one key): "--checksum: checksum: ..." would say it twice.
	flag := strings.HasPrefix(p, "--") && !strings.Contains(p, " ") && p != "--set"
	if e.Key != "" && !strings.HasSuffix(p, " "+e.Key) && !flag {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Decode copies src into dst strictly and returns every problem found (nil
// when there are none).
//
// src is a tree of map[string]any, []any and scalars as produced by a YAML
// parser or koanf's Raw(); values that came from env vars or flags are
// strings and are parsed ("8" → 8, "true" → true, "30s" → 30s, "a,b" → a list).
// dst must be a non-nil pointer. prefix is the key path of src and is used in
// error keys; pos, when non-nil, gives the source position of a key path.
//
// Contract:
//   - Values decode into the existing dst: struct fields and map entries whose
//     keys are absent from src keep their current (default) values. Maps are
//     merged key by key, non-nil pointers are decoded through (nil ones are
//     allocated), lists replace the whole slice, and `any` destinations
//     receive the src value as is.
//   - A null value leaves its destination unchanged.
//   - Struct fields are matched exactly by their `koanf:"name"` tag; untagged
//     fields and `koanf:"-"` are not decodable. Embedded structs (not
//     pointers) tagged `koanf:",squash"` contribute their fields to the
//     parent; the parent's own fields win on a name clash.
//   - Every problem is reported, in key order: unknown keys (with a "did you
//     mean" suggestion), type mismatches ("want X, got Y"), numbers out of
//     range, TextUnmarshaler errors and Validate errors (below). A scalar that
//     fails keeps its previous value, but when errors are returned dst may be
//     partly updated and should be discarded.
//   - After a struct present in src decodes without errors, if a pointer to it
//     has a `Validate() error` method, it is called and its error is
//     reported at the struct's key path.
func Decode(src any, dst any, prefix string, pos func(key string) Position) []*KeyError {
	d := &decoder{pos: pos}
	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		d.fail(prefix, "cannot decode into %T: want a non-nil pointer", dst)
		return d.errs
	}
	d.decode(prefix, src, v.Elem())
	return d.errs
}

type decoder struct {
	pos  func(string) Position
	errs []*KeyError
}

func (d *decoder) fail(key, format string, args ...any) {
	e := &KeyError{Key: key, Msg: fmt.Sprintf(format, args...)}
	if d.pos != nil {
		e.Pos = d.pos(key)
	}
	d.errs = append(d.errs, e)
}

var (
	durationType  = reflect.TypeFor[time.Duration]()
	unmarshalType = reflect.TypeFor[encoding.TextUnmarshaler]()
	validatorType = reflect.TypeFor[interface{ Validate() error }]()
)

// decode stores src into the settable value v. src is normalized first.
func (d *decoder) decode(key string, src any, v reflect.Value) {
	if src == nil {
		return
	}
	if v.Kind() == reflect.Interface && v.NumMethod() == 0 {
		v.Set(reflect.ValueOf(src)) // any: copied as is
		return
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(key, src, v.Elem())
		return
	}
	n := normalize(src)
	switch {
	case v.Type() == durationType:
		d.setDuration(key, n, v)
		return
	case reflect.PointerTo(v.Type()).Implements(unmarshalType):
		s, ok := text(n)
		if !ok {
			d.fail(key, "want a single value, got %s", describe(n))
			return
		}
		p := reflect.New(v.Type())
		if err := p.Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			d.fail(key, "%s", err.Error())
			return
		}
		v.Set(p.Elem())
		return
	}
	switch v.Kind() {
	case reflect.String:
		if s, ok := text(n); ok {
			v.SetString(s)
		} else {
			d.fail(key, "want a string, got %s", describe(n))
		}
	case reflect.Bool:
		b, ok := n.(bool)
		if s, isStr := n.(string); isStr {
			var err error
			b, err = strconv.ParseBool(strings.TrimSpace(s))
			ok = err == nil
		}
		if ok {
			v.SetBool(b)
		} else {
			d.fail(key, "want a boolean, got %s", describe(n))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		d.setInt(key, n, v)
	case reflect.Float32, reflect.Float64:
		d.setFloat(key, n, v)
	case reflect.Slice:
		d.setSlice(key, n, v)
	case reflect.Map:
		d.setMap(key, n, v)
	case reflect.Struct:
		d.setStruct(key, n, v)
	default:
		d.fail(key, "cannot decode into unsupported type %s", v.Type())
	}
}

func (d *decoder) setDuration(key string, n any, v reflect.Value) {
	switch x := n.(type) {
	case string:
		if dur, err := time.ParseDuration(strings.TrimSpace(x)); err == nil {
			v.SetInt(int64(dur))
			return
		}
	case int64, float64:
		if x == any(int64(0)) || x == any(0.0) { // a bare number is only accepted when 0
			v.SetInt(0)
			return
		}
	}
	d.fail(key, "want a duration like 30s, got %s", describe(n))
}

// setInt handles all signed and unsigned integer kinds, checking range.
func (d *decoder) setInt(key string, n any, v reflect.Value) {
	var z big.Int
	ok := true
	switch x := n.(type) {
	case int64:
		z.SetInt64(x)
	case uint64:
		z.SetUint64(x)
	case float64: // e.g. from a JSON source; must be integral
		if ok = x == math.Trunc(x) && !math.IsInf(x, 0); ok {
			big.NewFloat(x).Int(&z)
		}
	case string:
		_, ok = z.SetString(strings.TrimSpace(x), 10)
	default:
		ok = false
	}
	bits := v.Type().Bits()
	if v.CanUint() {
		if !ok || z.Sign() < 0 {
			d.fail(key, "want a non-negative integer, got %s", describe(n))
		} else if !z.IsUint64() || v.OverflowUint(z.Uint64()) {
			d.fail(key, "want an integer between 0 and %d, got %s", uint64(math.MaxUint64)>>(64-bits), describe(n))
		} else {
			v.SetUint(z.Uint64())
		}
		return
	}
	if !ok {
		d.fail(key, "want an integer, got %s", describe(n))
	} else if !z.IsInt64() || v.OverflowInt(z.Int64()) {
		d.fail(key, "want an integer between %d and %d, got %s", int64(-1)<<(bits-1), int64(1)<<(bits-1)-1, describe(n))
	} else {
		v.SetInt(z.Int64())
	}
}

func (d *decoder) setFloat(key string, n any, v reflect.Value) {
	var f float64
	ok := true
	switch x := n.(type) {
	case int64:
		f = float64(x)
	case uint64:
		f = float64(x)
	case float64:
		f = x
	case string:
		var err error
		f, err = strconv.ParseFloat(strings.TrimSpace(x), 64)
		ok = err == nil
	default:
		ok = false
	}
	if !ok {
		d.fail(key, "want a number, got %s", describe(n))
	} else if v.OverflowFloat(f) {
		d.fail(key, "want a number in %s range, got %s", v.Type(), describe(n))
	} else {
		v.SetFloat(f)
	}
}

// setSlice replaces v with the decoded list. A string is split on commas
// (env vars and flags); an empty string gives an empty list.
func (d *decoder) setSlice(key string, n any, v reflect.Value) {
	list, ok := n.([]any)
	if s, isStr := n.(string); isStr {
		list, ok = nil, true
		for part := range strings.SplitSeq(s, ",") {
			if part = strings.TrimSpace(part); part != "" {
				list = append(list, part)
			}
		}
	}
	if !ok {
		d.fail(key, "want a list, got %s", describe(n))
		return
	}
	v.Set(reflect.MakeSlice(v.Type(), len(list), len(list)))
	for i, item := range list {
		d.decode(join(key, strconv.Itoa(i)), item, v.Index(i))
	}
}

// setMap merges the entries of n into the map v, decoding each value into
// a copy of the existing entry (if any).
func (d *decoder) setMap(key string, n any, v reflect.Value) {
	m, ok := n.(map[string]any)
	if !ok {
		d.fail(key, "want a map, got %s", describe(n))
		return
	}
	kt, et := v.Type().Key(), v.Type().Elem()
	if kt.Kind() != reflect.String {
		d.fail(key, "cannot decode into unsupported type %s", v.Type())
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMapWithSize(v.Type(), len(m)))
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if m[k] == nil {
			continue
		}
		mk := reflect.ValueOf(k).Convert(kt)
		elem := reflect.New(et).Elem()
		if old := v.MapIndex(mk); old.IsValid() {
			elem.Set(old)
		}
		d.decode(join(key, k), m[k], elem)
		v.SetMapIndex(mk, elem)
	}
}

func (d *decoder) setStruct(key string, n any, v reflect.Value) {
	m, ok := n.(map[string]any)
	if !ok {
		d.fail(key, "want a map, got %s", describe(n))
		return
	}
	fields := structFields(v.Type())
	before := len(d.errs)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		index, ok := fields[k]
		if !ok {
			d.fail(join(key, k), "unknown key %q%s", k, suggest(k, slices.Sorted(maps.Keys(fields))))
			continue
		}
		d.decode(join(key, k), m[k], v.FieldByIndex(index))
	}
	if len(d.errs) == before && v.CanAddr() && v.Addr().Type().Implements(validatorType) {
		if err := v.Addr().Interface().(interface{ Validate() error }).Validate(); err != nil {
			d.fail(key, "%s", err.Error())
		}
	}
}

// structFields maps koanf names to field index paths, by keyFields (the
// walk that Fields documents): fields of the struct itself take precedence
// over fields of squashed embedded structs. The map is read only; it is
// made once per type (a batch decodes the same types for every file).
func structFields(t reflect.Type) map[string][]int {
	if m, ok := fieldsByType.Load(t); ok {
		return m.(map[string][]int)
	}
	out := map[string][]int{}
	for _, kf := range keyFields(t) {
		out[kf.name] = kf.index
	}
	fieldsByType.Store(t, out)
	return out
}

// fieldsByType holds structFields' maps by reflect.Type.
var fieldsByType sync.Map

// normalize reduces a scalar to string, bool, int64 (uint64 only above
// MaxInt64) or float64, a map to map[string]any and a list to []any.
// TextMarshalers (such as time.Time) become strings. Anything else is returned as is.
func normalize(src any) any {
	switch x := src.(type) {
	case string, bool, int64, float64, map[string]any, []any:
		return x
	case encoding.TextMarshaler:
		if b, err := x.MarshalText(); err == nil {
			return string(b)
		}
		return x
	}
	rv := reflect.ValueOf(src)
	switch rv.Kind() {
	case reflect.String:
		return rv.String()
	case reflect.Bool:
		return rv.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if u := rv.Uint(); u > math.MaxInt64 {
			return u
		} else {
			return int64(u)
		}
	case reflect.Float32, reflect.Float64:
		return rv.Float()
	case reflect.Slice, reflect.Array:
		out := make([]any, rv.Len())
		for i := range out {
			out[i] = rv.Index(i).Interface()
		}
		return out
	case reflect.Map:
		out := make(map[string]any, rv.Len())
		for it := rv.MapRange(); it.Next(); {
			out[fmt.Sprint(it.Key().Interface())] = it.Value().Interface()
		}
		return out
	}
	return src
}

// text is the string form of a normalized scalar.
func text(n any) (string, bool) {
	switch x := n.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case uint64:
		return strconv.FormatUint(x, 10), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	}
	return "", false
}

// describe names a normalized value for "got ..." messages.
func describe(n any) string {
	switch x := n.(type) {
	case string:
		return strconv.Quote(x)
	case map[string]any:
		return "a map"
	case []any:
		return "a list"
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool, int64, uint64:
		s, _ := text(x)
		return s
	}
	return fmt.Sprintf("a %T", n)
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}
