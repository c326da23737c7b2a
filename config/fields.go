package config

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/dlflow/dlflow/pipeline"
)

// Field is one key of a config struct: a key Decode accepts, with what the
// reference documents about it.
type Field struct {
	// Key is the dotted key path below the struct, such as "retries" or
	// "http.connect_timeout".
	Key string
	// Kind is what a value is written as: "string", "int", "bool", "size",
	// "duration", "list of string", "map of string", "map" (of anything).
	Kind string
	// Default is the field's value in the struct Fields walked, written as
	// a config file would write it; "" when it is an empty list or map.
	Default string
	// Help is the field's `help` tag.
	Help string
}

// Fields lists the keys of the config struct v (a struct or a pointer to
// one), in declaration order, with v's values as their defaults. It walks
// the `koanf` tags exactly as Decode matches them: untagged and `koanf:"-"`
// fields are left out, the fields of embedded structs tagged
// `koanf:",squash"` stand in the place of the embedding (a field of the
// struct itself wins a clash, then the first squashed struct), and a
// nested struct (a section, such as http) contributes its keys under its
// own name. It is nil when v is not a struct.
func Fields(v any) []Field {
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			rv = reflect.Zero(rv.Type().Elem())
			continue
		}
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Struct {
		return nil
	}
	return fieldsOf(rv, "")
}

func fieldsOf(v reflect.Value, prefix string) []Field {
	var out []Field
	for _, kf := range keyFields(v.Type()) {
		fv := v.FieldByIndex(kf.index)
		ft := kf.field.Type
		if ft.Kind() == reflect.Pointer && isSection(ft.Elem()) {
			// Decode allocates a nil section when a key under it is set.
			if fv.IsNil() {
				fv = reflect.Zero(ft.Elem())
			} else {
				fv = fv.Elem()
			}
			ft = ft.Elem()
		}
		if isSection(ft) {
			out = append(out, fieldsOf(fv, prefix+kf.name+".")...)
			continue
		}
		out = append(out, Field{Key: prefix + kf.name, Kind: kindName(ft), Default: defaultText(fv), Help: kf.field.Tag.Get("help")})
	}
	return out
}

// keyField is one key of a struct type: its koanf name and where the field
// sits (an index path through squashed embedded structs).
type keyField struct {
	name  string
	index []int
	field reflect.StructField
}

// keyFields lists the keys of struct type t, one level deep, in
// declaration order, with the fields of squashed embedded structs in the
// place of the embedding. A key declared twice is the struct's own field,
// else the first squashed struct's. It is the one reading of `koanf`
// tags: Decode matches keys by it, Fields documents them by it.
func keyFields(t reflect.Type) []keyField {
	own := map[string]bool{}
	for i := range t.NumField() {
		if name, ok := keyName(t.Field(i)); ok {
			own[name] = true
		}
	}
	var out []keyField
	taken := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		if isSquashed(f) {
			for _, sub := range keyFields(f.Type) {
				if !own[sub.name] && !taken[sub.name] {
					taken[sub.name] = true
					out = append(out, keyField{name: sub.name, index: append([]int{i}, sub.index...), field: sub.field})
				}
			}
			continue
		}
		if name, ok := keyName(f); ok {
			taken[name] = true
			out = append(out, keyField{name: name, index: []int{i}, field: f})
		}
	}
	return out
}

// keyName is the key of a field that has one: exported and tagged with a
// name other than "-".
func keyName(f reflect.StructField) (string, bool) {
	name, _, _ := strings.Cut(f.Tag.Get("koanf"), ",")
	return name, name != "" && name != "-" && f.IsExported()
}

// isSquashed reports whether f is an embedded struct (not a pointer) whose
// fields are keys of the struct embedding it.
func isSquashed(f reflect.StructField) bool {
	name, opts, _ := strings.Cut(f.Tag.Get("koanf"), ",")
	return f.Anonymous && name == "" && opts == "squash" && f.Type.Kind() == reflect.Struct
}

// isSection reports whether a value of type t is decoded as a struct of
// keys of its own (a map in the file), rather than from a single value.
func isSection(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && t != durationType && !reflect.PointerTo(t).Implements(unmarshalType)
}

func kindName(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[pipeline.ByteSize]():
		return "size"
	case durationType:
		return "duration"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return kindName(t.Elem())
	case reflect.Slice:
		return "list of " + kindName(t.Elem())
	case reflect.Map:
		if t.Elem().Kind() == reflect.Interface {
			return "map"
		}
		return "map of " + kindName(t.Elem())
	}
	return t.Kind().String()
}

// defaultText renders a value as a config file would write it; "" means
// no default (an empty list or map, a nil pointer).
func defaultText(v reflect.Value) string {
	switch {
	case (v.Kind() == reflect.Slice || v.Kind() == reflect.Map) && v.Len() == 0:
		return ""
	case v.Kind() == reflect.String && v.String() == "":
		return `""`
	case v.Kind() == reflect.Pointer:
		if v.IsNil() {
			return ""
		}
		return defaultText(v.Elem())
	case !v.CanInterface(): // reached through an unexported embedded struct
		return fmt.Sprint(v)
	}
	if s, ok := v.Interface().(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprint(v.Interface())
}
