package resolve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"moonbit-registry/manifest"
	"moonbit-registry/module"
)

// Catalog is the index as resolution reads it: the module list and each
// module's versions. The index mirror's lookups
// (*indexsync.Lookups) implement it.
type Catalog interface {
	// Modules lists every module in the index.
	Modules(ctx context.Context) ([]string, error)
	// Versions lists a module's versions as its index lines say. A module
	// the index does not list is an error wrapping module.ErrModuleNotFound.
	Versions(ctx context.Context, mod string) ([]manifest.Entry, error)
}

// SelectOptions changes what Select takes.
type SelectOptions struct {
	// Strict takes exactly what the patterns match, no dependencies.
	Strict bool
	// Latest takes only the newest non-yanked version of each matched module.
	Latest bool
	// All allows the pattern "*" (everything in the index).
	All bool
}

// Selection is the outcome of Select: what to fetch, and what could not be
// followed.
type Selection struct {
	// Versions to fetch, sorted by module, then version.
	Versions []manifest.Entry
	// Skipped are dependencies that were not followed (path or git
	// dependencies without a version, unknown modules, no satisfying version),
	// each with its reason.
	Skipped []Skipped
}

// Archives lists the selected versions as archive names.
func (s Selection) Archives() []module.Version {
	out := make([]module.Version, len(s.Versions))
	for i, v := range s.Versions {
		out[i] = v.Archive()
	}
	return out
}

// Skipped is a dependency Select did not follow, and why.
type Skipped struct {
	From   string // module@version that requires it, the project's manifest ("moon.mod"), or "" for a version --latest passed over
	Module string
	Reason string
	// Unresolved is set when the registry cannot satisfy the dependency
	// (unknown module, no matching version, unsupported requirement): a
	// project needing it cannot build from this mirror. Path and git
	// dependencies are skipped without it.
	Unresolved bool
}

// ErrNoMatch is returned when a pattern matches nothing.
var ErrNoMatch = errors.New("pattern matches nothing")

// ErrBadPattern is returned for a pattern that is not owner/name,
// owner/name@version, owner/* or *.
var ErrBadPattern = errors.New("invalid pattern")

// Select resolves mirror patterns against the index. Patterns are
// "owner/name" (every version), "owner/name@version", "owner/*" (every
// module below owner, nested ones too) and "*" (needs All). Yanked and
// deprecated versions are taken like any other (moon's resolver can select
// them); only Latest passes over them, reporting each in Skipped. Unless
// Strict, the dependencies of every
// selected version are added the way moon's minimal version selection
// resolves them: for each requirement, the lowest published version that
// satisfies it, recursively.
func Select(ctx context.Context, cat Catalog, patterns []string, opts SelectOptions) (Selection, error) {
	s := newSelector(ctx, cat)
	for _, p := range patterns {
		vs, err := s.match(p, opts)
		if err != nil {
			return Selection{}, err
		}
		for _, v := range vs {
			s.add(v)
		}
	}
	if !opts.Strict {
		if err := s.closure(); err != nil {
			return Selection{}, err
		}
	}
	return s.result(), nil
}

// SelectDeps selects what a project with these direct dependencies needs
// (manifest.ReadProject): the lowest satisfying version of each and their
// closure (Strict and Latest do not apply). Path and git dependencies are
// local to the project and are reported as skipped.
func SelectDeps(ctx context.Context, cat Catalog, reqs []manifest.Require) (Selection, error) {
	s := newSelector(ctx, cat)
	for _, r := range reqs {
		if !r.Dep.Registry() {
			s.skip(r.From, r.Module, "path or git dependency: not in the registry")
			continue
		}
		if err := s.require(r.From, r.Module, r.Dep.Version); err != nil {
			return Selection{}, err
		}
	}
	if err := s.closure(); err != nil {
		return Selection{}, err
	}
	return s.result(), nil
}

type selector struct {
	ctx      context.Context
	cat      Catalog
	versions map[string][]manifest.Entry // per module, sorted by semver
	chosen   map[string]manifest.Entry   // key module@version
	queue    []manifest.Entry
	skipped  []Skipped
}

func newSelector(ctx context.Context, cat Catalog) *selector {
	return &selector{ctx: ctx, cat: cat, versions: map[string][]manifest.Entry{}, chosen: map[string]manifest.Entry{}}
}

func (s *selector) versionsOf(mod string) ([]manifest.Entry, error) {
	if vs, ok := s.versions[mod]; ok {
		return vs, nil
	}
	vs, err := s.cat.Versions(s.ctx, mod)
	if err != nil {
		return nil, fmt.Errorf("versions of %s: %w", mod, err)
	}
	vs = slices.Clone(vs)
	slices.SortFunc(vs, func(a, b manifest.Entry) int { return module.Compare(a.Version, b.Version) })
	s.versions[mod] = vs
	return vs, nil
}

func (s *selector) add(v manifest.Entry) {
	key := v.Module + "@" + v.Version
	if _, ok := s.chosen[key]; ok {
		return
	}
	s.chosen[key] = v
	s.queue = append(s.queue, v)
}

func (s *selector) skip(from, mod, reason string) {
	s.skipped = append(s.skipped, Skipped{From: from, Module: mod, Reason: reason})
}

func (s *selector) unresolved(from, mod, reason string) {
	s.skipped = append(s.skipped, Skipped{From: from, Module: mod, Reason: reason, Unresolved: true})
}

// match expands one pattern into versions.
func (s *selector) match(pattern string, opts SelectOptions) ([]manifest.Entry, error) {
	name, version, exact := strings.Cut(pattern, "@")
	var modules []string
	switch {
	case name == "*":
		if !opts.All {
			return nil, fmt.Errorf("%w: %q selects the whole index; add --all if you mean it", ErrBadPattern, pattern)
		}
		all, err := s.cat.Modules(s.ctx)
		if err != nil {
			return nil, err
		}
		modules = all
	case strings.HasSuffix(name, "/*"):
		prefix := strings.TrimSuffix(name, "*")
		if err := module.ValidateModule(prefix + "x"); err != nil {
			return nil, fmt.Errorf("%w: %q: %v", ErrBadPattern, pattern, err)
		}
		all, err := s.cat.Modules(s.ctx)
		if err != nil {
			return nil, err
		}
		for _, m := range all {
			if strings.HasPrefix(m, prefix) {
				modules = append(modules, m)
			}
		}
	default:
		if err := module.ValidateModule(name); err != nil {
			return nil, fmt.Errorf("%w: %q: %v", ErrBadPattern, pattern, err)
		}
		modules = []string{name}
	}
	if exact && (name == "*" || strings.HasSuffix(name, "/*")) {
		return nil, fmt.Errorf("%w: %q: a version needs one module", ErrBadPattern, pattern)
	}
	if exact {
		if err := module.ValidateVersion(version); err != nil {
			return nil, fmt.Errorf("%w: %q: %v", ErrBadPattern, pattern, err)
		}
	}

	var out []manifest.Entry
	for _, m := range modules {
		vs, err := s.versionsOf(m)
		if errors.Is(err, module.ErrModuleNotFound) {
			continue // reported below as matching nothing
		}
		if err != nil {
			return nil, err
		}
		switch {
		case exact:
			// Named exactly: taken even when yanked.
			for _, v := range vs {
				if v.Version == version {
					out = append(out, v)
				}
			}
		case opts.Latest:
			v, passed, ok := latest(vs)
			for _, p := range passed {
				s.skip("", p.Module+"@"+p.Version, notice(p)) // nothing required it
			}
			if ok {
				out = append(out, v)
			}
		default:
			out = append(out, vs...)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %q", ErrNoMatch, pattern)
	}
	return out, nil
}

// latest is the newest release that is neither yanked nor deprecated, or
// such a prerelease when a module has no such release. passed are the
// newer versions it passed over because they are yanked or deprecated.
func latest(sorted []manifest.Entry) (chosen manifest.Entry, passed []manifest.Entry, ok bool) {
	var pre *manifest.Entry
	var prePassed []manifest.Entry
	for i := len(sorted) - 1; i >= 0; i-- {
		v := sorted[i]
		if v.Yanked || v.Deprecated != "" {
			passed = append(passed, v)
			continue
		}
		if !strings.Contains(strings.SplitN(v.Version, "+", 2)[0], "-") {
			return v, passed, true
		}
		if pre == nil {
			pre, prePassed = &sorted[i], slices.Clone(passed)
		}
	}
	if pre != nil {
		return *pre, prePassed, true
	}
	return manifest.Entry{}, passed, false
}

// notice says why Latest passed over v.
func notice(v manifest.Entry) string {
	if v.Yanked {
		return "yanked; --latest takes the newest version that is not"
	}
	return "deprecated (" + v.Deprecated + "); --latest takes the newest version that is not"
}

// closure follows dependencies of everything chosen until nothing new comes.
func (s *selector) closure() error {
	for len(s.queue) > 0 {
		if err := s.ctx.Err(); err != nil {
			return err
		}
		v := s.queue[0]
		s.queue = s.queue[1:]
		from := v.Module + "@" + v.Version
		deps := allDeps(v)
		for _, name := range sortedKeys(deps) {
			d := deps[name]
			if d.Version == "" && (d.Path != "" || d.Git != "") {
				s.skip(from, name, "path or git dependency without a version")
				continue
			}
			// A registry module's path and git dependencies resolve from the
			// registry by version, as in moon.
			if err := s.require(from, name, d.Version); err != nil {
				return err
			}
		}
	}
	return nil
}

// require adds the lowest published version of module that satisfies req.
func (s *selector) require(from, mod, req string) error {
	if module.ValidateModule(mod) != nil {
		s.unresolved(from, mod, "invalid module name")
		return nil
	}
	r, err := module.ParseRequirement(req)
	if err != nil {
		s.unresolved(from, mod, err.Error())
		return nil
	}
	vs, err := s.versionsOf(mod)
	if err != nil && !errors.Is(err, module.ErrModuleNotFound) {
		return err
	}
	if len(vs) == 0 {
		s.unresolved(from, mod, "module not in the index")
		return nil
	}
	for _, v := range vs {
		if r.Matches(v.Version) {
			s.add(v)
			return nil
		}
	}
	s.unresolved(from, mod, fmt.Sprintf("no published version satisfies %q", req))
	return nil
}

func (s *selector) result() Selection {
	// A version --latest passed over that a dependency then required was
	// taken after all: not skipped.
	skipped := slices.DeleteFunc(slices.Clone(s.skipped), func(sk Skipped) bool {
		_, taken := s.chosen[sk.Module]
		return sk.From == "" && taken
	})
	out := Selection{Skipped: skipped}
	for _, v := range s.chosen {
		out.Versions = append(out.Versions, v)
	}
	slices.SortFunc(out.Versions, func(a, b manifest.Entry) int {
		if c := strings.Compare(a.Module, b.Module); c != 0 {
			return c
		}
		return module.Compare(a.Version, b.Version)
	})
	return out
}

// allDeps is a version's regular and binary dependencies; moon resolves both.
func allDeps(v manifest.Entry) map[string]manifest.Dep {
	var extra struct {
		BinDeps map[string]manifest.Dep `json:"bin-deps"`
	}
	if len(v.Raw) == 0 || json.Unmarshal(v.Raw, &extra) != nil || len(extra.BinDeps) == 0 {
		return v.Deps
	}
	all := make(map[string]manifest.Dep, len(v.Deps)+len(extra.BinDeps))
	for k, d := range extra.BinDeps {
		all[k] = d
	}
	for k, d := range v.Deps {
		all[k] = d
	}
	return all
}

func sortedKeys(m map[string]manifest.Dep) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
