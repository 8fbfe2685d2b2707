package indexsync

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"moonbit-registry/internal/testsupport"
	"moonbit-registry/module"
)

// memOverlay is an Overlay held in memory.
type memOverlay struct {
	owners []string
	mu     sync.Mutex
	files  map[string][]byte
	at     time.Time
}

func (o *memOverlay) Owners() []string { return o.owners }

func (o *memOverlay) Files(context.Context) (map[string][]byte, time.Time, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.files), o.at, nil
}

func (o *memOverlay) set(path, content string, at time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.files == nil {
		o.files = map[string][]byte{}
	}
	o.files[path] = []byte(content)
	o.at = at
}

func privateLine(mod, version, c string) string {
	return `{"name": "` + mod + `", "version": "` + version + `", "deps": {"alice/foo": "0.1.0"}, "checksum": "` + sum(c) + `"}` + "\n"
}

func TestComposedIndex(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	src := smallIndex(t)
	// Upstream has a module under the owner this registry reserves: it
	// must never be served (dependency confusion).
	if err := os.MkdirAll(filepath.Join(src, "user", "acme"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "user", "acme", "lib.index"),
		[]byte(`{"name": "acme/lib", "version": "9.9.9", "checksum": "`+sum("e")+`"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The same owner in another case is the same directory on macOS and
	// Windows clients: hidden too.
	if err := os.MkdirAll(filepath.Join(src, "user", "ACME"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "user", "ACME", "core.index"),
		[]byte(`{"name": "ACME/core", "version": "9.9.9", "checksum": "`+sum("e")+`"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	up := startUpstream(t, src)
	ov := &memOverlay{owners: []string{"acme"}}
	ov.set("user/acme/lib.index", privateLine("acme/lib", "1.0.0", "f"), time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	m := newTestMirror(t, up.IndexURL(), func(o *Options) { o.Overlay = ov })
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	head, _ := up.Index.Head(ctx)
	served := m.Commit()
	if served == head {
		t.Fatalf("main is upstream's commit %s; want a composed one", head)
	}
	// The served tree: upstream's acme/lib replaced by the private one.
	v, ok, err := m.Lookups().Lookup(ctx, "acme/lib", "1.0.0")
	if err != nil || !ok || v.Checksum != sum("f") {
		t.Fatalf("private acme/lib@1.0.0: %+v %v %v", v, ok, err)
	}
	if _, ok, err := m.Lookups().Lookup(ctx, "acme/lib", "9.9.9"); ok || err != nil {
		t.Fatalf("upstream's acme/lib@9.9.9 is served (ok=%v, err=%v)", ok, err)
	}
	if _, ok, err := m.Lookups().Lookup(ctx, "ACME/core", "9.9.9"); ok || err != nil {
		t.Fatalf("upstream's ACME/core@9.9.9 is served beside the reserved acme (ok=%v, err=%v)", ok, err)
	}
	if _, ok, _ := m.Lookups().Lookup(ctx, "alice/foo", "0.2.0"); !ok {
		t.Fatal("upstream's alice/foo@0.2.0 is missing from the served index")
	}
	if got := testsupport.Git(t, m.Dir(), "status", "--porcelain"); got != "" {
		t.Errorf("work tree not clean: %s", got)
	}
	if refs := testsupport.Git(t, "", "ls-remote", "file://"+m.Dir()); strings.Contains(refs, "upstream") {
		t.Errorf("clients see the upstream ref:\n%s", refs)
	}

	// Another mirror with the same inputs builds the same commit.
	m2 := newTestMirror(t, up.IndexURL(), func(o *Options) { o.Overlay = ov })
	if _, err := m2.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if m2.Commit() != served {
		t.Errorf("same inputs, other commit: %s and %s", m2.Commit(), served)
	}

	// A client follows upstream's publishes and private ones with
	// fast-forwards only, shallow clones work all along.
	mirrorURL := "file://" + m.Dir()
	_, follow := shallowClient(t, m)
	pull := func(step string) {
		t.Helper()
		follow(step)
		fresh := filepath.Join(t.TempDir(), "fresh")
		testsupport.Git(t, "", "clone", "--depth", "1", "--single-branch", "--no-tags", mirrorURL, fresh)
		if _, err := os.Stat(filepath.Join(fresh, "user", "acme", "lib.index")); err != nil {
			t.Fatalf("%s: fresh clone lacks the private module: %v", step, err)
		}
	}
	for i, v := range []string{"1.0.0", "1.1.0"} {
		if err := up.Index.AddVersion(ctx, "alice/foo", v, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		pull("upstream publish " + v)
		if i == 0 {
			// Upstream publishes under the reserved owner too: not served.
			if err := up.Index.AddVersion(ctx, "acme/lib", "9.9.10", nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, ok, _ := m.Lookups().Lookup(ctx, "acme/lib", "9.9.10"); ok {
		t.Fatal("upstream's acme/lib@9.9.10 is served")
	}

	// A private publish is served by Recompose, with upstream down.
	up.Faults.FailWith(503)
	ov.set("user/acme/lib.index", privateLine("acme/lib", "1.0.0", "f")+privateLine("acme/lib", "1.1.0", "g"),
		time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC))
	c, err := m.Recompose(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := versionsOf(c.Added); strings.Join(got, " ") != "acme/lib@1.1.0" {
		t.Errorf("Recompose added %v", got)
	}
	pull("private publish")
	if _, ok, _ := m.Lookups().Lookup(ctx, "alice/foo", "1.1.0"); !ok {
		t.Fatal("a recompose lost upstream's newest version")
	}
	// Nothing changed: the same commit.
	before := m.Commit()
	if _, err := m.Recompose(ctx); err != nil || m.Commit() != before {
		t.Fatalf("an idle recompose moved main from %s to %s (%v)", before, m.Commit(), err)
	}
	up.Faults.Clear()
}

func TestComposeWithoutChangesServesUpstreamsTree(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	up := startUpstream(t, smallIndex(t))
	ov := &memOverlay{owners: []string{"acme"}}
	m := newTestMirror(t, up.IndexURL(), func(o *Options) { o.Overlay = ov })
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// Nothing private and nothing of acme upstream: upstream's tree, in a
	// commit of ours (what tells our commits from upstream's).
	head, _ := up.Index.Head(ctx)
	if m.Commit() == head {
		t.Fatalf("main is upstream's own commit %s", head)
	}
	if got, want := testsupport.Git(t, m.Dir(), "rev-parse", "main^{tree}"), testsupport.Git(t, up.Index.Dir(), "rev-parse", head+"^{tree}"); got != want {
		t.Errorf("served tree %s, upstream's %s", got, want)
	}
	// Syncing again without changes keeps the commit.
	before := m.Commit()
	if _, err := m.Sync(ctx); err != nil || m.Commit() != before {
		t.Fatalf("an idle sync moved main from %s to %s (%v)", before, m.Commit(), err)
	}
}

// TestComposedOverComposed: a registry whose upstream is another
// moonbit-registry composing its own index (commits with the same
// author) follows it, and publishes of its own land on top.
func TestComposedOverComposed(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	up := startUpstream(t, smallIndex(t))
	central := newTestMirror(t, up.IndexURL(), func(o *Options) {
		o.Overlay = &memOverlay{owners: []string{"corp"}, files: map[string][]byte{"user/corp/lib.index": []byte(privateLine("corp/lib", "1.0.0", "c"))}}
	})
	if _, err := central.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// The team registry mirrored central as it is before it took private
	// modules: it served central's own (composed) commit.
	dir := filepath.Join(t.TempDir(), "data", "index")
	plain := newTestMirror(t, "file://"+central.Dir(), func(o *Options) { o.Dir = dir })
	if _, err := plain.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	ov := &memOverlay{owners: []string{"acme"}}
	team := newTestMirror(t, "file://"+central.Dir(), func(o *Options) { o.Dir, o.Overlay = dir, ov })
	if _, err := team.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for i, v := range []string{"5.0.0", "5.1.0"} {
		if err := up.Index.AddVersion(ctx, "alice/foo", v, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := central.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			ov.set("user/acme/app.index", privateLine("acme/app", "0.1.0", "a"), time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC))
		}
		if _, err := team.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := team.Lookups().Lookup(ctx, "alice/foo", v); !ok {
			t.Fatalf("round %d: the team registry did not follow central to alice/foo@%s", i, v)
		}
		if _, ok, _ := team.Lookups().Lookup(ctx, "corp/lib", "1.0.0"); !ok {
			t.Fatalf("round %d: central's private module is missing", i)
		}
	}
	if _, ok, _ := team.Lookups().Lookup(ctx, "acme/app", "0.1.0"); !ok {
		t.Fatal("the team's own module is missing")
	}
}

func TestRecomposeNeedsAMirror(t *testing.T) {
	t.Parallel()
	m := newTestMirror(t, "http://127.0.0.1:1/git/index", func(o *Options) { o.Overlay = &memOverlay{} })
	if _, err := m.Recompose(ctxT(t)); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Recompose before the first sync: %v, want ErrNotReady", err)
	}
}

func TestComposedFromSources(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	main := startUpstream(t, smallIndex(t))
	central := startUpstream(t, smallIndex(t))
	// Upstream's own corp module is not served: corp comes from central.
	if err := main.Index.AddVersion(ctx, "corp/evil", "1.0.0", nil); err != nil {
		t.Fatal(err)
	}
	for _, mod := range []string{"corp/lib", "corpx/other"} {
		if err := central.Index.AddVersion(ctx, mod, "1.0.0", nil); err != nil {
			t.Fatal(err)
		}
	}
	m := newTestMirror(t, main.IndexURL(), func(o *Options) {
		o.Sources = []Source{{Name: "central", URL: central.IndexURL(), Owners: []string{"corp"}}}
	})
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	has := func(mod, version string) bool {
		t.Helper()
		_, ok, err := m.Lookups().Lookup(ctx, mod, version)
		if err != nil && !errors.Is(err, module.ErrModuleNotFound) {
			t.Fatal(err)
		}
		return ok
	}
	for _, c := range []struct {
		mod, version string
		want         bool
	}{
		{"corp/lib", "1.0.0", true},     // central's owner
		{"corp/evil", "1.0.0", false},   // upstream's, for an owner central serves
		{"corpx/other", "1.0.0", false}, // central's, but not an owner it serves
		{"alice/foo", "0.2.0", true},    // upstream's
	} {
		if got := has(c.mod, c.version); got != c.want {
			t.Errorf("%s@%s served: %v, want %v", c.mod, c.version, got, c.want)
		}
	}
	if v, _, _ := m.Lookups().Lookup(ctx, "corp/lib", "1.0.0"); v.Checksum != central.Downloads.Checksum("corp/lib", "1.0.0") {
		t.Errorf("corp/lib checksum %s, central's is %s", v.Checksum, central.Downloads.Checksum("corp/lib", "1.0.0"))
	}

	client, pull := shallowClient(t, m)
	// A client cannot fetch the source's commits by id: they carry
	// owners this registry does not serve.
	centralHead, _ := central.Index.Head(ctx)
	if out, err := testsupport.TryGit(t, client, "fetch", "origin", centralHead); err == nil {
		t.Fatalf("a client fetched the source's commit %s:\n%s", centralHead, out)
	}
	// The source moves on alone, then both.
	if err := central.Index.AddVersion(ctx, "corp/lib", "1.1.0", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	pull("source publish")
	if !has("corp/lib", "1.1.0") {
		t.Fatal("the source's new version is not served")
	}
	// With the source down, upstream still moves and corp stays.
	central.Faults.FailWith(503)
	if err := main.Index.AddVersion(ctx, "alice/foo", "3.0.0", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	pull("upstream publish, source down")
	if !has("alice/foo", "3.0.0") || !has("corp/lib", "1.1.0") || has("corp/evil", "1.0.0") {
		t.Fatal("with the source down the served index lost or gained something")
	}
	central.Faults.Clear()
}

// TestSyncBuildsOnMainMovedElsewhere: a publish by another process (the
// publish command beside a running server) moves main; the server's next
// sync builds on that commit, never on the one it remembered.
func TestSyncBuildsOnMainMovedElsewhere(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	up := startUpstream(t, smallIndex(t))
	ov := &memOverlay{owners: []string{"acme"}}
	dir := filepath.Join(t.TempDir(), "data", "index")
	server := newTestMirror(t, up.IndexURL(), func(o *Options) { o.Dir, o.Overlay = dir, ov })
	if _, err := server.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	command := newTestMirror(t, up.IndexURL(), func(o *Options) { o.Dir, o.Overlay = dir, ov })
	ov.set("user/acme/lib.index", privateLine("acme/lib", "1.0.0", "f"), time.Date(2026, 11, 4, 0, 0, 0, 0, time.UTC))
	if _, err := command.Recompose(ctx); err != nil {
		t.Fatal(err)
	}
	published := command.Commit()
	if err := up.Index.AddVersion(ctx, "alice/foo", "7.0.0", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := testsupport.TryGit(t, dir, "merge-base", "--is-ancestor", published, server.Commit()); err != nil {
		t.Fatalf("the server's sync built %s, which does not descend from %s that the publish served", server.Commit(), published)
	}
}

// shallowClient clones m as moon does and returns the clone and a pull
// that must fast-forward it to m's main.
func shallowClient(t *testing.T, m *Mirror) (dir string, pull func(step string)) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "client")
	testsupport.Git(t, "", "clone", "--depth", "1", "--single-branch", "--no-tags", "file://"+m.Dir(), dir)
	return dir, func(step string) {
		t.Helper()
		before := testsupport.Git(t, dir, "rev-parse", "HEAD")
		testsupport.Git(t, dir, "pull", "--ff-only", "origin", "main")
		after := testsupport.Git(t, dir, "rev-parse", "HEAD")
		if after != m.Commit() {
			t.Fatalf("%s: client at %s, mirror at %s", step, after, m.Commit())
		}
		testsupport.Git(t, dir, "merge-base", "--is-ancestor", before, after)
	}
}
