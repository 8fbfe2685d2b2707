package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"moonbit-registry/module"
)

// The names of a module's manifest in its two forms, and of a workspace.
const (
	JSONFile = "moon.mod.json"
	DSLFile  = "moon.mod"
	WorkFile = "moon.work"
)

// ErrInvalid matches (errors.Is) every error that says a manifest is
// malformed.
var ErrInvalid = errors.New("invalid manifest")

// invalidError is a malformed manifest: its message says what is wrong
// and where, and it matches ErrInvalid.
type invalidError struct{ msg string }

func (e *invalidError) Error() string        { return e.msg }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

func invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// Module is what a manifest says of a module, read the same from
// moon.mod.json and moon.mod: the fields the registry reads and writes
// into index lines. Other fields are accepted and left out.
type Module struct {
	Name    string
	Version string // "" when the manifest has none (a project, not a release)
	Deps    map[string]Dep
	// Readme, Repository, License, Description and Source are strings as
	// written; Keywords is nil when absent.
	Readme, Repository, License, Description, Source string
	Keywords                                         []string
	// PreferredTarget is one of wasm, wasm-gc, js, native, llvm, or "".
	PreferredTarget string
	// SupportedTargets is as written: a string expression ("js",
	// "+all-wasm") or a list of backends; nil when absent.
	SupportedTargets json.RawMessage
}

// Archive is the module version the manifest names.
func (m Module) Archive() module.Version { return module.Version{Module: m.Name, Version: m.Version} }

// Dep is one dependency, in a manifest or an index line: a version
// string (only Version set) or an object with any of these fields.
type Dep struct {
	Version string `json:"version,omitempty"`
	Path    string `json:"path,omitempty"`
	Git     string `json:"git,omitempty"`
	Branch  string `json:"branch,omitempty"`
}

// UnmarshalJSON accepts both dependency forms.
func (d *Dep) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		*d = Dep{}
		return json.Unmarshal(b, &d.Version)
	}
	if len(b) == 0 || b[0] != '{' {
		return fmt.Errorf("neither a version string nor an object: %.40s", b)
	}
	type plain Dep // no UnmarshalJSON: avoids recursion
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*d = Dep(p)
	return nil
}

// Registry reports whether the dependency is one the registry resolves:
// neither a path nor a git dependency.
func (d Dep) Registry() bool { return d.Path == "" && d.Git == "" }

// backends are the values preferred-target takes, and the tokens of a
// supported-targets expression (moonutil/src/target.rs).
var backends = []string{"wasm-gc", "native", "wasm", "llvm", "js"}

// ParseJSON reads a moon.mod.json.
func ParseJSON(data []byte) (Module, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			err = fmt.Errorf("%s where an object is expected", article(te.Value))
		}
		return Module{}, invalidf("%s is not valid JSON: %v", JSONFile, err)
	}
	return decode(JSONFile, fields, nil)
}

// decode reads the fields of a manifest (moon.mod's turned into JSON),
// with moon's checks (moonutil/src/module.rs, MoonModJSON -> MoonMod).
// pos, when set, places a field in its file.
func decode(file string, fields map[string]json.RawMessage, pos map[string]Pos) (Module, error) {
	where := func(key string) string {
		if p, ok := pos[key]; ok {
			return fmt.Sprintf("%s:%s: %q", file, p, key)
		}
		return fmt.Sprintf("%s: %q", file, key)
	}
	fail := func(key, format string, args ...any) error {
		return invalidf("%s: %s", where(key), fmt.Sprintf(format, args...))
	}
	var (
		m       Module
		rawDeps map[string]json.RawMessage
	)
	for _, f := range []struct {
		key string
		dst any
	}{
		{"name", &m.Name}, {"version", &m.Version}, {"deps", &rawDeps},
		{"readme", &m.Readme}, {"repository", &m.Repository}, {"license", &m.License},
		{"description", &m.Description}, {"keywords", &m.Keywords},
		{"root-dir", &m.Source}, {"source", &m.Source}, // "source" wins
		{"preferred-target", &m.PreferredTarget},
	} {
		if !present(fields, f.key) {
			continue
		}
		if err := json.Unmarshal(fields[f.key], f.dst); err != nil {
			return Module{}, fail(f.key, "%v", typeError(err))
		}
	}
	for name, raw := range rawDeps {
		var d Dep
		if err := json.Unmarshal(raw, &d); err != nil {
			return Module{}, fail("deps", "dependency %q: %v", name, typeError(err))
		}
		if m.Deps == nil {
			m.Deps = make(map[string]Dep, len(rawDeps))
		}
		m.Deps[name] = d
	}
	if _, ok := fields["name"]; !ok {
		return Module{}, invalidf("%s has no \"name\"", file)
	}
	if m.Name == "" {
		return Module{}, fail("name", "must not be empty")
	}
	if present(fields, "version") {
		if err := module.ValidateVersion(m.Version); err != nil {
			return Module{}, fail("version", "%q is not a semantic version", m.Version)
		}
	}
	if i := strings.IndexAny(m.Source, `<>:"|?*`); i >= 0 {
		return Module{}, fail("source", "must not contain %q", m.Source[i])
	}
	if strings.HasPrefix(m.Source, "/") || strings.HasPrefix(m.Source, `\`) {
		return Module{}, fail("source", "must be a subdirectory of the module, not %q", m.Source)
	}
	if present(fields, "preferred-target") && !slices.Contains(backends, m.PreferredTarget) {
		return Module{}, fail("preferred-target", "%q is not a backend (wasm, wasm-gc, js, native, llvm)", m.PreferredTarget)
	}
	if present(fields, "supported-targets") {
		raw := fields["supported-targets"]
		if err := checkSupportedTargets(raw); err != nil {
			return Module{}, fail("supported-targets", "%v", err)
		}
		m.SupportedTargets = compactJSON(raw)
	}
	return m, nil
}

// present reports whether a manifest gives key a value: null is none.
func present(fields map[string]json.RawMessage, key string) bool {
	raw, ok := fields[key]
	return ok && !bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// typeError says what a JSON type error means without Go's type names.
func typeError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("%s where %s is expected", article(te.Value), jsonKind(te.Type.String()))
	}
	return err
}

// article puts "a" or "an" before a JSON kind ("an array", "a string").
func article(kind string) string {
	if kind != "" && strings.ContainsRune("aeiou", rune(kind[0])) {
		return "an " + kind
	}
	return "a " + kind
}

func jsonKind(goType string) string {
	switch {
	case goType == "string":
		return "a string"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["):
		return "an object"
	}
	return "another value"
}

func compactJSON(raw json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return raw
	}
	return b.Bytes()
}

// checkSupportedTargets checks supported-targets as moon does
// (moonutil/src/supported_targets.rs): a list of backends, or an
// expression of terms "+backend", "-backend", "+all", "-all" (the first
// "+" may be left out).
func checkSupportedTargets(raw json.RawMessage) error {
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		for _, b := range list {
			if !slices.Contains(backends, b) {
				return fmt.Errorf("%q is not a backend (wasm, wasm-gc, js, native, llvm)", b)
			}
		}
		return nil
	}
	var expr string
	if err := json.Unmarshal(raw, &expr); err != nil {
		return errors.New("must be a string expression such as \"js\" or \"all-js+wasm-gc\", or a list of backends")
	}
	rest := strings.TrimSpace(expr)
	if rest == "" {
		return errors.New("the expression is empty (examples: \"js\", \"all-js+wasm-gc\")")
	}
	for first := true; rest != ""; first = false {
		rest = strings.TrimLeft(rest, " \t\n\r")
		if rest == "" {
			break
		}
		if rest[0] == '+' || rest[0] == '-' {
			rest = strings.TrimLeft(rest[1:], " \t\n\r")
		} else if !first {
			return fmt.Errorf("expression %q: expected `+` or `-` before %q", expr, rest)
		}
		matched := ""
		for _, tok := range append(slices.Clone(backends), "all") {
			if strings.HasPrefix(rest, tok) && (len(rest) == len(tok) || strings.ContainsRune("+- \t\n\r", rune(rest[len(tok)]))) {
				matched = tok
				break
			}
		}
		if matched == "" {
			return fmt.Errorf("expression %q: unknown backend at %q", expr, rest)
		}
		rest = rest[len(matched):]
	}
	return nil
}
