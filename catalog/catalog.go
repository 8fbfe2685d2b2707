// Package catalog answers what `moon search` and `moon view` ask the
// registry's API (search, a module's releases, a user's modules) from the
// local index alone, so that both keep working when upstream cannot answer
// and for modules only this registry has; the web page reads it too.
package catalog

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/semaphore"

	"moonbit-registry/manifest"
	"moonbit-registry/module"
)

// ErrNotFound: the index is current and has no such module or version.
var ErrNotFound = errors.New("not in the index")

// Index is what the catalog reads: the index mirror with its lookups.
type Index interface {
	Modules(ctx context.Context) ([]string, error)
	Versions(ctx context.Context, mod string) ([]manifest.Entry, error)
	// Commit identifies what the index holds now; the search table is
	// rebuilt when it changes.
	Commit() string
	// Ready is nil while the index is current enough that "not in the
	// index" means "does not exist".
	Ready() error
}

// Catalog answers search and metadata queries. It is safe for concurrent
// use.
type Catalog struct {
	idx      Index
	searches *semaphore.Weighted // bounds the searches running at once

	mu    sync.Mutex // held while the table is (re)built
	table *table
}

// New returns a catalog over idx.
func New(idx Index) *Catalog {
	return &Catalog{idx: idx, searches: semaphore.NewWeighted(maxSearches)}
}

// table is one row per module for the index at commit, sorted by name.
type table struct {
	commit string
	rows   []row
}

type row struct {
	summary Summary
	// Lower-cased copies for matching.
	name, leaf, description string
	keywords                []string
}

// Summary is one module as search lists it: its newest version that is
// not yanked, with that version's description and keywords.
type Summary struct {
	Name        string   `json:"name"`
	Version     string   `json:"version"`
	Description string   `json:"description,omitempty"`
	Keywords    []string `json:"keywords,omitempty"`
}

// current returns the table for the index as it is now, building it when
// the index moved.
func (c *Catalog) current(ctx context.Context) (*table, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	commit := c.idx.Commit()
	if c.table != nil && c.table.commit == commit {
		return c.table, nil
	}
	mods, err := c.idx.Modules(ctx)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	t := &table{commit: commit, rows: make([]row, 0, len(mods))}
	for _, m := range mods {
		// moon refuses a whole search answer for one name with
		// whitespace, '@', ':', a backslash, control or bidi characters (search.rs,
		// is_safe_registry_module_name); the grammar admits none of them.
		if module.ValidateModule(m) != nil {
			continue
		}
		vs, err := c.idx.Versions(ctx, m)
		if errors.Is(err, module.ErrModuleNotFound) || (err == nil && len(vs) == 0) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		t.rows = append(t.rows, newRow(m, vs))
	}
	c.table = t
	return t, nil
}

func newRow(name string, vs []manifest.Entry) row {
	v := newest(vs)
	r := row{
		summary:     Summary{Name: name, Version: v.Version, Description: v.Description, Keywords: v.Keywords},
		name:        strings.ToLower(name),
		description: strings.ToLower(v.Description),
	}
	r.leaf = r.name[strings.IndexByte(r.name, '/')+1:]
	for _, k := range v.Keywords {
		r.keywords = append(r.keywords, strings.ToLower(k))
	}
	return r
}

// newest is the highest version that is not yanked, or the highest of all
// when every version is. A deprecated version still counts: it is
// published, and the deprecation is shown with it.
func newest(vs []manifest.Entry) manifest.Entry {
	best, bestAny := -1, 0
	for i, v := range vs {
		if module.Compare(v.Version, vs[bestAny].Version) > 0 {
			bestAny = i
		}
		if !v.Yanked && (best < 0 || module.Compare(v.Version, vs[best].Version) > 0) {
			best = i
		}
	}
	if best < 0 {
		return vs[bestAny]
	}
	return vs[best]
}

// MaxSearchLimit caps a search's limit.
const MaxSearchLimit = 1000

// DefaultSearchLimit is the limit when the query gives none (as upstream).
const DefaultSearchLimit = 20

// Bounds on what one search may cost, whatever a client sends: its words
// (after dropping repeats), each word's length, and the searches running
// at once (others wait for a turn, or for their request to end).
const (
	maxSearchWords   = 8
	maxSearchWordLen = 64
	maxSearches      = 4
)

// searchWords are the distinct lower-cased words of kw, at most
// maxSearchWords of them, each cut to maxSearchWordLen bytes.
func searchWords(kw string) []string {
	var words []string
	for _, w := range strings.Fields(strings.ToLower(kw)) {
		if len(w) > maxSearchWordLen {
			w = strings.ToValidUTF8(w[:maxSearchWordLen], "")
		}
		if !slices.Contains(words, w) {
			words = append(words, w)
		}
		if len(words) == maxSearchWords {
			break
		}
	}
	return words
}

// Search returns at most limit modules matching every word of kw
// (case-insensitive) in the name, keywords or description, most relevant
// first: a name equal to the word, then a name segment starting with it,
// then the name containing it, then keywords, then the description. Ties
// go by name. An empty kw lists modules by name. Only the first
// maxSearchWords distinct words count; ctx ending stops the search.
func (c *Catalog) Search(ctx context.Context, kw string, limit int) ([]Summary, error) {
	if err := c.searches.Acquire(ctx, 1); err != nil {
		return nil, err
	}
	defer c.searches.Release(1)
	t, err := c.current(ctx)
	if err != nil {
		return nil, err
	}
	words := searchWords(kw)
	type hit struct {
		score int
		r     *row
	}
	var hits []hit
	for i := range t.rows {
		if i%256 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		r := &t.rows[i]
		total := 0
		for _, w := range words {
			s := r.score(w)
			if s == 0 {
				total = 0
				break
			}
			total += s
		}
		if total > 0 || len(words) == 0 {
			hits = append(hits, hit{total, r})
		}
	}
	slices.SortStableFunc(hits, func(a, b hit) int { return cmp.Compare(b.score, a.score) }) // rows are sorted by name
	out := make([]Summary, 0, min(len(hits), limit))
	for _, h := range hits[:min(len(hits), limit)] {
		out = append(out, h.r.summary)
	}
	return out, nil
}

// score rates how well one lower-cased word matches the row; 0 is no match.
func (r *row) score(w string) int {
	switch {
	case r.name == w || r.leaf == w:
		return 100
	case segmentPrefix(r.name, w):
		return 60
	case strings.Contains(r.name, w):
		return 40
	case slices.Contains(r.keywords, w):
		return 30
	case slices.ContainsFunc(r.keywords, func(k string) bool { return strings.Contains(k, w) }):
		return 20
	case strings.Contains(r.description, w):
		return 10
	}
	return 0
}

// segmentPrefix reports whether a part of name between '/', '-' or '_'
// starts with w.
func segmentPrefix(name, w string) bool {
	for _, seg := range strings.FieldsFunc(name, func(r rune) bool { return r == '/' || r == '-' || r == '_' }) {
		if strings.HasPrefix(seg, w) {
			return true
		}
	}
	return false
}

// All lists every module, by name: a search for nothing, without a limit.
func (c *Catalog) All(ctx context.Context) ([]Summary, error) {
	return c.Search(ctx, "", math.MaxInt)
}

// Module is what the index knows of one module, in the shape of the
// registry's module metadata.
type Module struct {
	Name          string `json:"name"`
	Version       string `json:"version"`
	LatestVersion string `json:"latest_version"`
	Description   string `json:"description,omitempty"`
	// Keywords is empty rather than null, as clients may iterate it.
	Keywords     []string        `json:"keywords"`
	License      string          `json:"license,omitempty"`
	Repository   string          `json:"repository,omitempty"`
	Yanked       bool            `json:"yanked"`
	YankedReason *string         `json:"yanked_reason"`
	Deprecated   string          `json:"deprecated,omitempty"`
	Versions     []ModuleVersion `json:"versions"`
}

// ModuleVersion is one published version in Module.Versions.
type ModuleVersion struct {
	Version      string  `json:"version"`
	CreatedAt    string  `json:"created_at,omitempty"`
	Yanked       bool    `json:"yanked"`
	YankedReason *string `json:"yanked_reason"`
	Deprecated   string  `json:"deprecated,omitempty"`
	Checksum     string  `json:"checksum,omitempty"`
	// Deps are the version's registry dependencies: module -> requirement
	// ("path" or "git" for local ones without a version).
	Deps map[string]string `json:"deps,omitempty"`
}

// Module returns a module's metadata: ErrNotFound when the index is current
// and lacks it.
func (c *Catalog) Module(ctx context.Context, name string) (Module, error) {
	vs, err := c.versions(ctx, name)
	if err != nil {
		return Module{}, err
	}
	latest := newest(vs)
	m := Module{
		Name: name, Version: latest.Version, LatestVersion: latest.Version,
		Description: latest.Description, Keywords: slices.Clone(latest.Keywords), License: latest.License, Repository: latest.Repository,
		Yanked: latest.Yanked, YankedReason: reason(latest.Yanked, latest.YankedReason), Deprecated: latest.Deprecated,
	}
	if m.Keywords == nil {
		m.Keywords = []string{}
	}
	sorted := slices.Clone(vs)
	slices.SortFunc(sorted, func(a, b manifest.Entry) int { return module.Compare(a.Version, b.Version) })
	for _, v := range sorted {
		m.Versions = append(m.Versions, ModuleVersion{
			Version: v.Version, CreatedAt: v.CreatedAt,
			Yanked: v.Yanked, YankedReason: reason(v.Yanked, v.YankedReason), Deprecated: v.Deprecated,
			Checksum: v.Checksum, Deps: depsOf(v),
		})
	}
	return m, nil
}

// depsOf renders a version's dependencies as requirements.
func depsOf(v manifest.Entry) map[string]string {
	if len(v.Deps) == 0 {
		return nil
	}
	out := make(map[string]string, len(v.Deps))
	for name, d := range v.Deps {
		switch {
		case d.Version != "":
			out[name] = d.Version
		case d.Git != "":
			out[name] = "git"
		default:
			out[name] = "path"
		}
	}
	return out
}

// reason is a yanked version's reason ("" when the line gives none), nil
// for a version that is not yanked.
func reason(yanked bool, why string) *string {
	if !yanked {
		return nil
	}
	return &why
}

// View is one release of a module as `moon view` reads it from
// /api/v0/manifest/<module>[@<version>] (RegistryModuleManifest in
// mooncake's registry/client.rs; docs/protocol.md §7). A deprecated
// release is "yanked" with the deprecation as its reason: that is what
// moon view shows as deprecated.
type View struct {
	Module        string          `json:"module"`
	Name          string          `json:"name"` // the module again, as mooncakes.io's frontend reads it
	Version       string          `json:"version"`
	Yanked        bool            `json:"yanked"`
	YankedReason  *string         `json:"yanked_reason"`
	LatestVersion string          `json:"latest_version"`
	Metadata      json.RawMessage `json:"metadata"` // the release's index line
	Versions      []Release       `json:"versions"` // every release, oldest first
	Downloads     *int64          `json:"downloads,omitempty"`
}

// Release is one release in View.Versions and User.Modules.
type Release struct {
	Name         string  `json:"name,omitempty"` // in User.Modules only
	Version      string  `json:"version"`
	Yanked       bool    `json:"yanked"`
	YankedReason *string `json:"yanked_reason"`
}

func releaseOf(v manifest.Entry) Release {
	r := Release{Version: v.Version, Yanked: v.Yanked || v.Deprecated != ""}
	switch {
	case v.Deprecated != "":
		r.YankedReason = &v.Deprecated
	case v.Yanked:
		r.YankedReason = reason(true, v.YankedReason)
	}
	return r
}

// View returns a release of a module in the shape moon view reads:
// version "" is the latest (the newest release that is not yanked; a
// deprecated one counts). ErrNotFound when the index is current and lacks
// it.
func (c *Catalog) View(ctx context.Context, name, version string) (View, error) {
	if version != "" {
		if err := module.ValidateVersion(version); err != nil {
			return View{}, err
		}
	}
	vs, err := c.versions(ctx, name)
	if err != nil {
		return View{}, err
	}
	latest := newest(vs)
	shown := latest
	if version != "" {
		i := slices.IndexFunc(vs, func(v manifest.Entry) bool { return v.Version == version })
		if i < 0 {
			return View{}, c.notFound(fmt.Sprintf("%s@%s", name, version))
		}
		shown = vs[i]
	}
	rel := releaseOf(shown)
	view := View{
		Module: name, Name: name, Version: shown.Version, Yanked: rel.Yanked, YankedReason: rel.YankedReason,
		LatestVersion: latest.Version, Metadata: shown.Raw,
	}
	sorted := slices.Clone(vs)
	slices.SortFunc(sorted, func(a, b manifest.Entry) int { return module.Compare(a.Version, b.Version) })
	for _, v := range sorted {
		view.Versions = append(view.Versions, releaseOf(v))
	}
	return view, nil
}

// User is a user's profile as `moon view <user>` reads it from
// /api/v0/user/<user> (RegistryUserModules): each of the owner's modules
// with its latest release, by name.
type User struct {
	Username string    `json:"username"`
	Modules  []Release `json:"modules"`
}

// User lists the modules of owner: ErrNotFound when the index is current
// and has none.
func (c *Catalog) User(ctx context.Context, owner string) (User, error) {
	if err := module.ValidateOwner(owner); err != nil {
		return User{}, err
	}
	t, err := c.current(ctx)
	if err != nil {
		return User{}, err
	}
	u := User{Username: owner, Modules: []Release{}}
	for _, r := range t.rows { // sorted by name
		if module.Owner(r.summary.Name) != owner {
			continue
		}
		vs, err := c.idx.Versions(ctx, r.summary.Name)
		if err != nil || len(vs) == 0 {
			continue // gone since the table was built
		}
		rel := releaseOf(newest(vs))
		rel.Name = r.summary.Name
		u.Modules = append(u.Modules, rel)
	}
	if len(u.Modules) == 0 {
		return User{}, c.notFound("user " + owner)
	}
	return u, nil
}

// versions is a module's versions, or ErrNotFound (when the index is
// current) or the index's error.
func (c *Catalog) versions(ctx context.Context, name string) ([]manifest.Entry, error) {
	if err := module.ValidateModule(name); err != nil {
		return nil, err
	}
	vs, err := c.idx.Versions(ctx, name)
	if errors.Is(err, module.ErrModuleNotFound) || (err == nil && len(vs) == 0) {
		return nil, c.notFound(name)
	}
	if err != nil {
		return nil, err
	}
	return vs, nil
}

// notFound is ErrNotFound when the index is current; otherwise absence
// proves nothing and the error says the index is unavailable.
func (c *Catalog) notFound(what string) error {
	if err := c.idx.Ready(); err != nil {
		return fmt.Errorf("%s is not in the local index, which is not current: %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, ErrNotFound)
}
