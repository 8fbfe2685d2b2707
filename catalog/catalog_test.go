package catalog

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"moonbit-registry/indexsync"
	"moonbit-registry/internal/testupstream"
	"moonbit-registry/manifest"
	"moonbit-registry/module"
)

// syncedIndex is an index mirror synced from a test upstream serving the
// real snapshot, with a yanked newest version of moonbitlang/x.
func syncedIndex(t testing.TB) (mirrorIndex, *testupstream.Upstream) {
	t.Helper()
	src, err := testupstream.DefaultIndexSource()
	if err != nil {
		t.Fatalf("real index snapshot: %v", err)
	}
	up := testupstream.Start(t, testupstream.Options{IndexSource: src})
	yank := `{"name": "moonbitlang/x", "version": "0.4.40", "checksum": "` + fmt.Sprintf("%064d", 0) + `", "yanked": true, "yanked_reason": "broken build"}`
	if err := up.Index.AddVersionRaw(t.Context(), "moonbitlang/x", []byte(yank)); err != nil {
		t.Fatal(err)
	}
	m, err := indexsync.New(indexsync.Options{
		Dir:         filepath.Join(t.TempDir(), "index"),
		UpstreamURL: up.IndexURL(),
		GitTimeout:  time.Minute,
		Logger:      zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	if _, err := m.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	return mirrorIndex{m, m.Lookups()}, up
}

// mirrorIndex is an index mirror with its lookups, as app wires them.
type mirrorIndex struct {
	*indexsync.Mirror
	*indexsync.Lookups
}

func names(ss []Summary) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.Name
	}
	return out
}

func TestSearchRealIndex(t *testing.T) {
	t.Parallel()
	m, _ := syncedIndex(t)
	c := New(m)
	ctx := t.Context()
	tests := []struct {
		name  string
		kw    string
		limit int
		want  []string // the first len(want) results, in order
		n     int      // when > 0: exactly this many results
	}{
		{"name equal to the word first, then a name segment starting with it",
			"regexp", 5, []string{"ZijianFeng33/regexp", "moonbitlang/regexp", "yj-qin/regexp", "mizchi/js_regexp"}, 0},
		{"case-insensitive", "REGEXP", 3, []string{"ZijianFeng33/regexp", "moonbitlang/regexp", "yj-qin/regexp"}, 0},
		{"every word must match, name matches before descriptions", "json parser", 100,
			[]string{"bzy-debug/json_parser", "maria/json_parser", "tonyfettes/json_parser", "tonyfettes/json_test_parser", "tonyfettes/maria_json_parser"}, 0},
		{"limit", "json", 2, nil, 2},
		{"limit zero", "json", 0, nil, 0},
		{"no match", "no-such-module-anywhere", 20, nil, 0},
		{"full name", "moonbitlang/x", 1, []string{"moonbitlang/x"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Search(ctx, tt.kw, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if got == nil {
				t.Fatal("nil result: it must encode as [], not null")
			}
			if len(got) > tt.limit {
				t.Errorf("%d results over the limit %d", len(got), tt.limit)
			}
			if tt.want != nil && (len(got) < len(tt.want) || !slices.Equal(names(got[:len(tt.want)]), tt.want)) {
				t.Errorf("Search(%q) = %q, want it to start with %q", tt.kw, names(got), tt.want)
			}
			if tt.want == nil && len(got) != tt.n {
				t.Errorf("Search(%q) = %d results %q, want %d", tt.kw, len(got), names(got), tt.n)
			}
		})
	}

	// A result carries the newest version that is not yanked, with its
	// description and keywords.
	got, err := c.Search(ctx, "moonbitlang/x", 1)
	if err != nil {
		t.Fatal(err)
	}
	want := Summary{Name: "moonbitlang/x", Version: "0.4.38", Description: "experimental packages for moonbitlang/core", Keywords: []string{"experimental", "moonbitlang", "json", "time", "crypto"}}
	if len(got) != 1 || got[0].Name != want.Name || got[0].Version != want.Version || got[0].Description != want.Description || !slices.Equal(got[0].Keywords, want.Keywords) {
		t.Errorf("moonbitlang/x summary %+v, want %+v", got, want)
	}
}

func TestSearchFollowsTheIndex(t *testing.T) {
	t.Parallel()
	m, up := syncedIndex(t)
	c := New(m)
	ctx := t.Context()
	if got, _ := c.Search(ctx, "zzcatalogtest", 5); len(got) != 0 {
		t.Fatalf("found %q before it was published", names(got))
	}
	if err := up.Index.AddVersion(ctx, "zzcatalogtest/fresh", "0.1.0", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Search(ctx, "zzcatalogtest", 5); !slices.Equal(names(got), []string{"zzcatalogtest/fresh"}) {
		t.Errorf("after the sync: %q", names(got))
	}
}

func TestModuleAndManifest(t *testing.T) {
	t.Parallel()
	m, _ := syncedIndex(t)
	c := New(m)
	ctx := t.Context()

	git, err := c.Module(ctx, "mizchi/git")
	if err != nil {
		t.Fatal(err)
	}
	if git.LatestVersion != "0.2.0" || git.Deprecated == "" || git.Yanked || len(git.Versions) != 3 {
		t.Errorf("mizchi/git: %+v", git)
	}
	if v := git.Versions[2]; v.Version != "0.2.0" || v.Deprecated != "This package has been renamed to mizchi/bit. Please use mizchi/bit instead." {
		t.Errorf("mizchi/git 0.2.0: %+v", v)
	}

	x, err := c.Module(ctx, "moonbitlang/x")
	if err != nil {
		t.Fatal(err)
	}
	last := x.Versions[len(x.Versions)-1]
	if x.LatestVersion != "0.4.38" || last.Version != "0.4.40" || !last.Yanked || last.YankedReason == nil || *last.YankedReason != "broken build" {
		t.Errorf("moonbitlang/x: latest %s, last %+v", x.LatestVersion, last)
	}
	for _, v := range x.Versions[:len(x.Versions)-1] {
		if v.Yanked || v.YankedReason != nil {
			t.Errorf("%s: yanked %v, reason %v", v.Version, v.Yanked, v.YankedReason)
		}
	}
	if !slices.IsSortedFunc(x.Versions, func(a, b ModuleVersion) int { return module.Compare(a.Version, b.Version) }) {
		t.Error("versions are not in semver order")
	}

}

// TestView: the shapes moon view reads (mooncake registry/client.rs
// RegistryModuleManifest and RegistryUserModules), deprecation as yanked
// with the reason.
func TestView(t *testing.T) {
	t.Parallel()
	m, _ := syncedIndex(t)
	c := New(m)
	ctx := t.Context()
	const renamed = "This package has been renamed to mizchi/bit. Please use mizchi/bit instead."
	type release struct {
		Name         string  `json:"name"`
		Version      string  `json:"version"`
		Yanked       *bool   `json:"yanked"`
		YankedReason *string `json:"yanked_reason"`
	}
	type view struct {
		release
		Module        string         `json:"module"`
		LatestVersion string         `json:"latest_version"`
		Metadata      map[string]any `json:"metadata"`
		Versions      []release      `json:"versions"`
	}
	decode := func(v any) view {
		t.Helper()
		raw, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var out view
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatal(err)
		}
		if out.Yanked == nil {
			t.Errorf("%s: yanked is null or missing; moon needs a bool", raw)
		}
		return out
	}
	for _, tt := range []struct {
		name, module, version       string
		wantVersion, wantLatest     string
		wantYanked                  bool
		wantReason                  string
		wantVersions                int
		wantLastYanked, wantLastWhy string
	}{
		{"latest of a deprecated module", "mizchi/git", "", "0.2.0", "0.2.0", true, renamed, 3, "true", renamed},
		{"an older release", "mizchi/git", "0.1.2", "0.1.2", "0.2.0", false, "", 3, "true", renamed},
		{"latest skips a yanked release", "moonbitlang/x", "", "0.4.38", "0.4.38", false, "", 43, "true", "broken build"},
		{"the yanked release asked for", "moonbitlang/x", "0.4.40", "0.4.40", "0.4.38", true, "broken build", 43, "true", "broken build"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v, err := c.View(ctx, tt.module, tt.version)
			if err != nil {
				t.Fatal(err)
			}
			got := decode(v)
			if got.Module != tt.module || got.Version != tt.wantVersion || got.LatestVersion != tt.wantLatest || *got.Yanked != tt.wantYanked {
				t.Errorf("module %q version %q latest %q yanked %v", got.Module, got.Version, got.LatestVersion, *got.Yanked)
			}
			if why := deref(got.YankedReason); why != tt.wantReason {
				t.Errorf("yanked_reason %q, want %q", why, tt.wantReason)
			}
			if got.Metadata["name"] != tt.module || got.Metadata["version"] != tt.wantVersion {
				t.Errorf("metadata %v is not the release's index line", got.Metadata)
			}
			if len(got.Versions) != tt.wantVersions {
				t.Fatalf("%d versions, want %d", len(got.Versions), tt.wantVersions)
			}
			last := got.Versions[len(got.Versions)-1]
			if fmt.Sprint(*last.Yanked) != tt.wantLastYanked || deref(last.YankedReason) != tt.wantLastWhy {
				t.Errorf("newest release %+v", last)
			}
			if !slices.IsSortedFunc(got.Versions, func(a, b release) int { return module.Compare(a.Version, b.Version) }) {
				t.Error("versions are not in semver order")
			}
		})
	}

	u, err := c.User(ctx, "mizchi")
	if err != nil {
		t.Fatal(err)
	}
	if u.Username != "mizchi" || len(u.Modules) < 2 || !slices.IsSortedFunc(u.Modules, func(a, b Release) int { return cmp.Compare(a.Name, b.Name) }) {
		t.Fatalf("user mizchi: %+v", u)
	}
	i := slices.IndexFunc(u.Modules, func(r Release) bool { return r.Name == "mizchi/git" })
	if i < 0 || u.Modules[i].Version != "0.2.0" || !u.Modules[i].Yanked || deref(u.Modules[i].YankedReason) != renamed {
		t.Errorf("mizchi/git in the profile: %+v", u.Modules)
	}
	for _, r := range u.Modules {
		if module.Owner(r.Name) != "mizchi" {
			t.Errorf("profile of mizchi lists %s", r.Name)
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// staleIndex is an index whose sync has been failing too long.
type staleIndex struct{ mirrorIndex }

func (staleIndex) Ready() error { return fmt.Errorf("%w: syncs failing", module.ErrIndexUnavailable) }

func TestNotFoundOnlyWhenTheIndexIsCurrent(t *testing.T) {
	t.Parallel()
	m, _ := syncedIndex(t)
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		idx  Index
		want error
	}{
		{"current", m, ErrNotFound},
		{"stale", staleIndex{m}, module.ErrIndexUnavailable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := New(tt.idx)
			if _, err := c.Module(ctx, "nobody/nothing"); !errors.Is(err, tt.want) {
				t.Errorf("unknown module: %v, want %v", err, tt.want)
			}
			if _, err := c.View(ctx, "moonbitlang/x", "9.9.9"); !errors.Is(err, tt.want) {
				t.Errorf("unknown version: %v, want %v", err, tt.want)
			}
			if _, err := c.User(ctx, "nobody"); !errors.Is(err, tt.want) {
				t.Errorf("unknown user: %v, want %v", err, tt.want)
			}
			if _, err := c.Module(ctx, "../etc"); !errors.Is(err, module.ErrBadName) {
				t.Errorf("bad name: %v", err)
			}
		})
	}
}

// TestSearchCostIsBounded: whatever a client sends, a search looks at a
// few distinct, short words, stops when its request ends, and waits for a
// turn when maxSearches are running.
func TestSearchCostIsBounded(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 1000)
	for _, tt := range []struct {
		name, kw string
		want     []string
	}{
		{"30 KB of one word", strings.Repeat("a ", 15000), []string{"a"}},
		{"repeats in any case", "Json JSON json parser", []string{"json", "parser"}},
		{"many distinct words", "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10", []string{"w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8"}},
		{"a very long word", long, []string{long[:maxSearchWordLen]}},
		{"nothing", "  \t ", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := searchWords(tt.kw); !slices.Equal(got, tt.want) {
				t.Errorf("searchWords = %q, want %q", got, tt.want)
			}
		})
	}

	m, _ := syncedIndex(t)
	c := New(m)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.Search(ctx, "json", 5); !errors.Is(err, context.Canceled) {
		t.Errorf("search of an ended request: %v, want context.Canceled", err)
	}
	// Every slot taken: a search waits, and gives up with its request.
	if err := c.searches.Acquire(t.Context(), maxSearches); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { _, err := c.Search(ctx, "json", 5); done <- err }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("search waiting for a slot: %v, want context.Canceled", err)
	}
	c.searches.Release(maxSearches)
	if got, err := c.Search(t.Context(), "json "+strings.Repeat("json ", 5000), 5); err != nil || len(got) == 0 {
		t.Errorf("search of a repeated word: %v, %v", got, err)
	}
}

// BenchmarkSearchHostile is the 30 KB query of one repeated word against
// the real index.
func BenchmarkSearchHostile(b *testing.B) {
	m, _ := syncedIndex(b)
	c := New(m)
	kw := strings.Repeat("a ", 15000)
	if _, err := c.Search(b.Context(), kw, 20); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Search(b.Context(), kw, 20); err != nil {
			b.Fatal(err)
		}
	}
}

// namesIndex is an index of the given module names, each with one version.
type namesIndex []string

func (n namesIndex) Modules(context.Context) ([]string, error) { return n, nil }
func (n namesIndex) Versions(_ context.Context, mod string) ([]manifest.Entry, error) {
	return []manifest.Entry{{Module: mod, Version: "1.0.0", Raw: json.RawMessage(`{}`)}}, nil
}
func (namesIndex) Commit() string { return "c" }
func (namesIndex) Ready() error   { return nil }

// TestSearchNeverListsNamesMoonRefuses: moon refuses the whole answer if
// one name holds whitespace, '@', ':', '\', control or bidi characters
// (search.rs, is_safe_registry_module_name); such names in an index are
// left out.
func TestSearchNeverListsNamesMoonRefuses(t *testing.T) {
	t.Parallel()
	idx := namesIndex{"alice/ok", "alice/two words", "alice/at@1.0.0", "alice/co:lon", `alice/back\slash`,
		"alice/new\nline", "alice/\u202eevil", "alice/\u2066iso", "alice/原来可以发中文包", "illusory0x0/🐫"}
	got, err := New(idx).Search(t.Context(), "", 100)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"alice/ok", "alice/原来可以发中文包", "illusory0x0/🐫"}
	if !slices.Equal(names(got), want) {
		t.Errorf("listed %q, want %q", names(got), want)
	}
}
