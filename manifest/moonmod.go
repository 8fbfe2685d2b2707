package manifest

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"

	"moonbit-registry/module"
)

// moonModKeys are the statements moon.mod may hold; only rule may repeat
// (moonutil/src/manifest.rs, read_module_from_dsl).
var moonModKeys = map[string]bool{
	"import": true, "options": true, "warnings": true, "name": true, "version": true,
	"readme": true, "repository": true, "license": true, "keywords": true,
	"description": true, "source": true, "supported_targets": true,
	"preferred_target": true, "rule": true,
}

// ParseDSL reads a moon.mod as moon does: its statements become the
// fields of a moon.mod.json (options(...) merged in, import { "o/m@v" }
// as deps, preferred_target and supported_targets renamed), which are
// then read as ParseJSON reads them. Only versioned registry
// dependencies may be imported. Errors name line and column.
func ParseDSL(data []byte) (Module, error) {
	sts, err := parseDSL(DSLFile, data)
	if err != nil {
		return Module{}, err
	}
	fail := failIn(DSLFile)
	top := newObject()
	var rules []statement
	for _, st := range sts {
		_, dup := top.vals[st.key]
		switch {
		case !moonModKeys[st.key]:
			return Module{}, fail(st.pos, "unexpected key %q in moon.mod", st.key)
		case st.key == "rule":
			rules = append(rules, st)
			continue
		case dup:
			return Module{}, fail(st.pos, "%q is given twice (first at %s)", st.key, top.pos[st.key])
		}
		top.set(st.key, st.value, st.pos)
	}
	// options(...) is not a field: its labels are (moon takes it out
	// before merging, so a label "options" is no repeat).
	opts, isObj := top.vals["options"].(*object)
	top.remove("options")
	if isObj {
		for _, k := range opts.keys {
			if _, dup := top.vals[k]; dup || (k == "rule" && len(rules) > 0) {
				first := top.pos[k]
				if !dup {
					first = rules[0].pos
				}
				return Module{}, fail(opts.pos[k], "%q is given twice (first at %s)", k, first)
			}
			top.set(k, opts.vals[k], opts.pos[k])
		}
	}
	// warnings and warn-list are one field, warnings first.
	if w, ok := top.vals["warnings"]; ok {
		ws, _ := w.(string)
		wl, _ := top.vals["warn-list"].(string)
		delete(top.vals, "warn-list")
		if ws+wl != "" {
			top.set("warn-list", ws+wl, top.pos["warnings"])
		}
	}
	if r, ok := top.vals["rule"]; ok { // options("rule": [...])
		list, isList := r.([]any)
		if !isList {
			return Module{}, fail(top.pos["rule"], "\"rule\" must be a list of rules")
		}
		for _, v := range list {
			rules = append(rules, statement{key: "rule", value: v, pos: top.pos["rule"]})
		}
	}
	if err := checkRules(rules, fail); err != nil {
		return Module{}, err
	}
	for from, to := range map[string]string{"preferred_target": "preferred-target", "supported_targets": "supported-targets"} {
		if v, ok := top.vals[from]; ok {
			top.set(to, v, top.pos[from])
		}
	}
	deps, err := importDeps(top, fail)
	if err != nil {
		return Module{}, err
	}
	fields := make(map[string]json.RawMessage, len(top.keys))
	for _, k := range top.keys {
		if v, ok := top.vals[k]; ok {
			fields[k] = toJSON(v)
		}
	}
	fields["deps"] = toJSON(deps)
	m, err := decode(DSLFile, fields, top.pos)
	if err != nil {
		return Module{}, err
	}
	for _, name := range deps.keys {
		d := m.Deps[name]
		p := deps.pos[name]
		switch {
		case d.Path != "":
			return Module{}, fail(p, "local dependency %q: moon.mod imports only registry modules (use a moon.work workspace for local ones)", name)
		case d.Git != "":
			return Module{}, fail(p, "git dependency %q: moon.mod imports only registry modules", name)
		case d.Version == "":
			return Module{}, fail(p, "dependency %q has no version: moon.mod imports only versioned registry modules (\"owner/module@1.2.3\")", name)
		}
		if err := module.ValidateVersion(d.Version); err != nil {
			return Module{}, fail(p, "dependency %q: %q is not a semantic version", name, d.Version)
		}
	}
	return m, nil
}

// importDeps lowers `import { "owner/module@1.2.3", ... }` onto the deps
// an options(deps: {...}) may already hold; a module imported twice keeps
// its last version.
func importDeps(top *object, fail func(Pos, string, ...any) error) (*object, error) {
	deps := newObject()
	if d, ok := top.vals["deps"]; ok {
		obj, isObj := d.(*object)
		if !isObj {
			return nil, fail(top.pos["deps"], "\"deps\" must be an object")
		}
		deps = obj
	}
	items, _ := top.vals["import"].([]any)
	for _, it := range items {
		spec, ok := it.(string)
		if alias, isObj := it.(*object); isObj && alias.vals["alias"] != nil {
			return nil, fail(alias.pos["alias"], "%s@%v: aliases are not supported in moon.mod", toJSON(alias.vals["path"]), alias.vals["alias"])
		}
		if !ok { // options("import": [...]) with something else in it
			return nil, fail(top.pos["import"], "\"import\" must be a list of \"owner/module@1.2.3\" strings")
		}
		i := strings.LastIndexByte(spec, '@')
		if i <= 0 || i == len(spec)-1 {
			return nil, fail(top.pos["import"], "import %q: moon.mod imports only versioned registry modules (\"owner/module@1.2.3\")", spec)
		}
		deps.set(spec[:i], spec[i+1:], top.pos["import"])
	}
	return deps, nil
}

// checkRules checks the rule(name: ..., command: ...) statements: both
// strings, names unique.
func checkRules(rules []statement, fail func(Pos, string, ...any) error) error {
	seen := map[string]bool{}
	for _, r := range rules {
		obj, ok := r.value.(*object)
		if !ok {
			return fail(r.pos, "a rule must be rule(name: \"...\", command: \"...\")")
		}
		name, ok1 := obj.vals["name"].(string)
		_, ok2 := obj.vals["command"].(string)
		if !ok1 || !ok2 {
			return fail(r.pos, "a rule needs a string name and a string command")
		}
		if seen[name] {
			return fail(r.pos, "rule %q is given twice", name)
		}
		seen[name] = true
	}
	return nil
}

// toJSON renders a DSL value as JSON, objects in their order.
func toJSON(v any) json.RawMessage {
	var b bytes.Buffer
	writeJSON(&b, v)
	return b.Bytes()
}

func writeJSON(b *bytes.Buffer, v any) {
	switch v := v.(type) {
	case *object:
		b.WriteByte('{')
		for i, k := range v.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			key, _ := json.Marshal(k)
			b.Write(key)
			b.WriteByte(':')
			writeJSON(b, v.vals[k])
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSON(b, e)
		}
		b.WriteByte(']')
	default: // string, int64, bool
		data, _ := json.Marshal(v)
		b.Write(data)
	}
}

// Work is a moon.work: the module directories of a workspace.
type Work struct {
	// Members as written: paths relative to the moon.work's directory,
	// or absolute.
	Members []string
	// PreferredTarget is deprecated in moon.work; read, not used.
	PreferredTarget string
}

// ParseWork reads a moon.work (the DSL of moon.mod, with only members =
// [...] and preferred_target; moonutil/src/workspace.rs).
func ParseWork(data []byte) (Work, error) {
	sts, err := parseDSL(WorkFile, data)
	if err != nil {
		return Work{}, err
	}
	fail := failIn(WorkFile)
	var w Work
	seen := map[string]Pos{}
	for _, st := range sts {
		if first, dup := seen[st.key]; dup {
			return Work{}, fail(st.pos, "%q is given twice (first at %s)", st.key, first)
		}
		seen[st.key] = st.pos
		switch st.key {
		case "members":
			list, ok := st.value.([]any)
			if !ok {
				return Work{}, fail(st.pos, "members must be a list of directories")
			}
			w.Members = []string{}
			for _, m := range list {
				s, ok := m.(string)
				if !ok || s == "" {
					return Work{}, fail(st.pos, "members must be a list of directories, each a non-empty string")
				}
				w.Members = append(w.Members, s)
			}
		case "preferred_target":
			s, ok := st.value.(string)
			if !ok || !slices.Contains(backends, s) {
				return Work{}, fail(st.pos, "preferred_target must be one of wasm, wasm-gc, js, native, llvm")
			}
			w.PreferredTarget = s
		default:
			return Work{}, fail(st.pos, "unexpected key %q in moon.work (members, preferred_target)", st.key)
		}
	}
	if w.Members == nil {
		return Work{}, invalidf("%s has no members = [...]", WorkFile)
	}
	return w, nil
}

// MemberDirs are the members' directories, relative ones joined to dir
// (the moon.work's), cleaned, without repeats, sorted.
func (w Work) MemberDirs(dir string) []string {
	var out []string
	for _, m := range w.Members {
		if !filepath.IsAbs(m) {
			m = filepath.Join(dir, m)
		}
		out = append(out, filepath.Clean(m))
	}
	slices.Sort(out)
	return slices.Compact(out)
}
