package config

import (
	"encoding"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Override is one value set from outside the file: a command-line flag.
type Override struct {
	Key   string // "section.key", e.g. "server.listen"
	Value string
	Name  string // how the user wrote it, for messages, e.g. "--listen"
}

// LoadOptions says where configuration comes from.
type LoadOptions struct {
	// Root is the registry root; relative paths resolve against it. "" is ".".
	Root string
	// File is the configuration file. "" means <Root>/registry.toml, which
	// may be missing (then defaults apply); a named file must exist.
	File string
	// Env is the environment in os.Environ form; only MOONBIT_REGISTRY_*
	// entries are read.
	Env []string
	// Flags override everything else.
	Flags []Override
}

// Load reads the file (if any), applies the environment and flags over it,
// resolves paths and validates the result. Every error names the key and
// where its value came from (file and line, variable, or flag).
func Load(opts LoadOptions) (Config, error) {
	root := opts.Root
	if root == "" {
		root = "."
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return Config{}, fmt.Errorf("registry root %q: %w", opts.Root, err)
	}
	cfg := Defaults()
	cfg.Root = root
	src := sources{}

	file, explicit := opts.File, opts.File != ""
	if !explicit {
		file = filepath.Join(root, FileName)
	}
	data, err := os.ReadFile(file)
	switch {
	case err == nil:
		cfg.File = file
		if err := decodeFile(file, data, &cfg, src); err != nil {
			return Config{}, err
		}
	case errors.Is(err, fs.ErrNotExist) && !explicit:
		// No file: embedded defaults.
	default:
		return Config{}, fmt.Errorf("config file: %w", err)
	}

	keys := fieldsOf(&cfg)
	if err := applyEnv(opts.Env, keys, src); err != nil {
		return Config{}, err
	}
	for _, o := range opts.Flags {
		f, ok := keys[o.Key]
		if !ok {
			return Config{}, fmt.Errorf("flag %s: unknown configuration key %q", o.Name, o.Key)
		}
		if err := setFromString(f, o.Value); err != nil {
			return Config{}, fmt.Errorf("flag %s: %s: %w", o.Name, o.Key, err)
		}
		src[o.Key] = "flag " + o.Name
	}

	if err := cfg.validate(src); err != nil {
		return Config{}, err
	}
	if err := cfg.validateSources(src, opts.Env); err != nil {
		return Config{}, err
	}
	cfg.resolvePaths()
	cfg.sources = src
	return cfg, nil
}

// sources remembers where each non-default key's value came from.
type sources map[string]string

func (s sources) of(key string) string {
	if w, ok := s[key]; ok {
		return w
	}
	return "default"
}

// decodeFile decodes a TOML file into v (a pointer to a struct with toml
// tags) and records in src where each key came from: "section.key",
// "section.sub.key", or "table[i].key" for the i-th element of an array of
// tables ([[table]]). Unknown keys are errors with their line.
func decodeFile(file string, data []byte, v any, src sources) error {
	md, err := toml.Decode(string(data), v)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			if pe.LastKey != "" {
				return fmt.Errorf("%s line %d: %s: %s", file, pe.Position.Line, pe.LastKey, pe.Message)
			}
			return fmt.Errorf("%s line %d: %s", file, pe.Position.Line, pe.Message)
		}
		return fmt.Errorf("%s: %w", file, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0]
		return fmt.Errorf("%s line %d: unknown key %q", file, lineOf(data, k, -1), k.String())
	}
	// Keys come in file order; each element of an array of tables starts
	// with its table's own key.
	elements := map[string]int{}
	for _, k := range md.Keys() {
		path := k.String()
		if md.Type(k...) == "ArrayHash" {
			elements[path]++
			continue
		}
		if len(k) < 2 {
			continue
		}
		table, idx := k[:len(k)-1], -1
		if n, ok := elements[table.String()]; ok {
			idx = n - 1
			path = fmt.Sprintf("%s[%d].%s", table.String(), idx, k[len(k)-1])
		}
		src[path] = fmt.Sprintf("%s line %d", file, lineOf(data, k, idx))
	}
	return nil
}

// lineOf finds the line that defines key (a table header or "name = ...")
// in TOML text; with index >= 0, the key inside the index-th [[table]]
// element. The toml package does not expose key positions, and the schema
// uses plain headers, so a line scan is enough. 0: not found.
func lineOf(data []byte, key toml.Key, index int) int {
	table, element := "", -1
	counts := map[string]int{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			header := strings.TrimSpace(strings.SplitN(line, "#", 2)[0])
			name := strings.Trim(header, "[] \t")
			table, element = name, -1
			if strings.HasPrefix(header, "[[") {
				element = counts[name]
				counts[name]++
			}
			if name == key.String() && (index < 0 || element == index) {
				return i + 1
			}
			continue
		}
		name, _, ok := strings.Cut(line, "=")
		if !ok || len(key) < 2 {
			continue
		}
		name = strings.Trim(strings.TrimSpace(name), `"'`)
		if table == key[:len(key)-1].String() && name == key[len(key)-1] && (index < 0 || element == index) {
			return i + 1
		}
	}
	return 0
}

// fieldsOf maps every settable key ("section.key", "section.sub.key") of
// v, a pointer to a struct with toml tags, to its field, so file,
// environment and flags share one list of keys. Nested structs are nested
// tables; arrays of tables ([[table]]) are left out: they come from the
// file only.
func fieldsOf(v any) map[string]reflect.Value {
	out := map[string]reflect.Value{}
	for _, f := range orderedFields(reflect.ValueOf(v).Elem()) {
		out[f.key] = f.value
	}
	return out
}

// field is one settable key and its field.
type field struct {
	key   string
	value reflect.Value
}

// orderedFields lists the settable keys of the struct v in the order of
// its sections and fields (see fieldsOf).
func orderedFields(v reflect.Value) []field {
	var out []field
	addFields(v, "", &out)
	return out
}

func addFields(v reflect.Value, prefix string, out *[]field) {
	for i := range v.NumField() {
		tag := v.Type().Field(i).Tag.Get("toml")
		if tag == "" || tag == "-" {
			continue
		}
		f := v.Field(i)
		_, text := f.Addr().Interface().(encoding.TextUnmarshaler)
		switch {
		case f.Kind() == reflect.Struct && !text:
			addFields(f, prefix+tag+".", out)
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct:
			// An array of tables: file only.
		case prefix != "": // top-level fields are sections
			*out = append(*out, field{prefix + tag, f})
		}
	}
}

// setFromString parses s into the field the way the file would: durations
// and sizes as strings, lists comma-separated.
func setFromString(f reflect.Value, s string) error {
	if u, ok := f.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return u.UnmarshalText([]byte(s))
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("invalid boolean %q (want true or false)", s)
		}
		f.SetBool(b)
	case reflect.Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("invalid integer %q", s)
		}
		f.SetInt(int64(n))
	case reflect.Slice:
		var list []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				list = append(list, p)
			}
		}
		f.Set(reflect.ValueOf(list))
	default:
		return fmt.Errorf("unsupported field type %s", f.Type())
	}
	return nil
}

// applyEnv sets keys from MOONBIT_REGISTRY_<KEY> variables, where <KEY> is
// the key's path with dots as underscores (server.listen:
// MOONBIT_REGISTRY_SERVER_LISTEN; store.s3.bucket:
// MOONBIT_REGISTRY_STORE_S3_BUCKET). A variable naming a known section but
// no key in it is an error; others (MOONBIT_REGISTRY_DIR, a command's own)
// are not configuration and are left alone.
func applyEnv(env []string, keys map[string]reflect.Value, src sources) error {
	byName := make(map[string]string, len(keys))
	sections := map[string]bool{}
	for k := range keys {
		byName[EnvPrefix+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))] = k
		sections[strings.ToUpper(strings.SplitN(k, ".", 2)[0])] = true
	}
	for _, kv := range env {
		name, value, _ := strings.Cut(kv, "=")
		rest, ok := strings.CutPrefix(name, EnvPrefix)
		if !ok {
			continue
		}
		key, known := byName[strings.ToUpper(name)]
		if !known {
			if sec, k, _ := strings.Cut(strings.ToUpper(rest), "_"); sections[sec] {
				return fmt.Errorf("environment %s: unknown configuration key %q", name, strings.ToLower(sec+"."+k))
			}
			continue
		}
		if err := setFromString(keys[key], value); err != nil {
			return fmt.Errorf("environment %s: %s: %w", name, key, err)
		}
		src[key] = "environment " + name
	}
	return nil
}

func (c *Config) resolvePaths() {
	for _, p := range []*string{&c.Index.Dir, &c.Cache.Dir, &c.Cache.HTTPDir, &c.Private.Dir} {
		if !filepath.IsAbs(*p) {
			*p = filepath.Join(c.Root, *p)
		}
		*p = filepath.Clean(*p)
	}
}
