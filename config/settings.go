package config

import (
	"encoding"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// Setting is one key of the effective configuration, as the config
// command prints it.
type Setting struct {
	Key    string // "section.key"
	Value  string // in TOML syntax
	Source string // "default", "<file> line N", "environment NAME" or "flag --name"
}

// Settings lists every key with its effective value and where it came
// from, in the order of the sections and fields of Config.
func (c Config) Settings() []Setting {
	var out []Setting
	for _, f := range orderedFields(reflect.ValueOf(&c).Elem()) {
		out = append(out, Setting{Key: f.key, Value: tomlValue(f.value), Source: c.sources.of(f.key)})
	}
	// [[sources]] tables, each key's source by the table's place in the
	// file (a table without owners shows as upstream.*).
	for i, s := range c.Sources {
		var fields []field
		inFile := fmt.Sprintf("sources[%d].", s.index)
		addFields(reflect.ValueOf(&s).Elem(), inFile, &fields)
		for _, f := range fields {
			key := fmt.Sprintf("sources[%d].", i) + strings.TrimPrefix(f.key, inFile)
			out = append(out, Setting{Key: key, Value: tomlValue(f.value), Source: c.sources.of(f.key)})
		}
	}
	return out
}

// tomlValue writes a field's value as registry.toml would hold it.
func tomlValue(f reflect.Value) string {
	if m, ok := f.Interface().(encoding.TextMarshaler); ok {
		b, err := m.MarshalText()
		if err != nil {
			return fmt.Sprintf("%q", err.Error())
		}
		return strconv.Quote(string(b))
	}
	switch f.Kind() {
	case reflect.String:
		return strconv.Quote(f.String())
	case reflect.Slice:
		items := make([]string, f.Len())
		for i := range items {
			items[i] = tomlValue(f.Index(i))
		}
		return "[" + strings.Join(items, ", ") + "]"
	}
	return fmt.Sprint(f.Interface())
}
