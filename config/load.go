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
	cfg.resolvePaths()
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

func decodeFile(file string, data []byte, cfg *Config, src sources) error {
	md, err := toml.Decode(string(data), cfg)
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
		return fmt.Errorf("%s line %d: unknown key %q", file, lineOf(data, k), k.String())
	}
	for _, k := range md.Keys() {
		if len(k) == 2 {
			src[k.String()] = fmt.Sprintf("%s line %d", file, lineOf(data, k))
		}
	}
	return nil
}

// lineOf finds the line that defines key (a table header or "name = ...")
// in TOML text. The toml package does not expose key positions, and our
// schema is two plain levels deep, so a line scan is enough.
func lineOf(data []byte, key toml.Key) int {
	table := ""
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			name := strings.Trim(strings.TrimSpace(strings.SplitN(line, "#", 2)[0]), "[] \t")
			table = name
			if len(key) == 1 && name == key[0] {
				return i + 1
			}
			continue
		}
		name, _, ok := strings.Cut(line, "=")
		if !ok || len(key) < 2 {
			continue
		}
		name = strings.Trim(strings.TrimSpace(name), `"'`)
		if table == strings.Join(key[:len(key)-1], ".") && name == key[len(key)-1] {
			return i + 1
		}
	}
	return 0
}

// fieldsOf maps "section.key" to the settable field in cfg, using the toml
// tags, so file, environment and flags share one list of keys.
func fieldsOf(cfg *Config) map[string]reflect.Value {
	out := map[string]reflect.Value{}
	v := reflect.ValueOf(cfg).Elem()
	for i := range v.NumField() {
		sec := v.Type().Field(i).Tag.Get("toml")
		if sec == "" || sec == "-" {
			continue
		}
		sv := v.Field(i)
		for j := range sv.NumField() {
			out[sec+"."+sv.Type().Field(j).Tag.Get("toml")] = sv.Field(j)
		}
	}
	return out
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

func applyEnv(env []string, keys map[string]reflect.Value, src sources) error {
	sections := map[string]bool{}
	for k := range keys {
		sections[strings.SplitN(k, ".", 2)[0]] = true
	}
	for _, kv := range env {
		name, value, _ := strings.Cut(kv, "=")
		rest, ok := strings.CutPrefix(name, EnvPrefix)
		if !ok {
			continue
		}
		sec, key, _ := strings.Cut(strings.ToLower(rest), "_")
		if !sections[sec] {
			// Not a config section: e.g. MOONBIT_REGISTRY_DIR is a CLI flag's.
			continue
		}
		f, ok := keys[sec+"."+key]
		if !ok {
			return fmt.Errorf("environment %s: unknown configuration key %q", name, sec+"."+key)
		}
		if err := setFromString(f, value); err != nil {
			return fmt.Errorf("environment %s: %s.%s: %w", name, sec, key, err)
		}
		src[sec+"."+key] = "environment " + name
	}
	return nil
}

func (c *Config) resolvePaths() {
	for _, p := range []*string{&c.Index.Dir, &c.Cache.Dir, &c.Cache.HTTPDir} {
		if !filepath.IsAbs(*p) {
			*p = filepath.Join(c.Root, *p)
		}
		*p = filepath.Clean(*p)
	}
}
