package indexsync

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"moonbit-registry/internal/testsupport"
	"moonbit-registry/internal/testupstream"
	"moonbit-registry/manifest"
)

func versionsOf(vs []manifest.Entry) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Module+"@"+v.Version)
	}
	return out
}

func TestSyncFirstThenIncremental(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	up := startUpstream(t, smallIndex(t))
	m := newTestMirror(t, up.IndexURL(), nil)

	if _, err := m.Lookups().Versions(ctx, "alice/foo"); !errors.Is(err, ErrNotReady) {
		t.Fatalf("before first sync: err = %v, want ErrNotReady", err)
	}
	c, err := m.Sync(ctx)
	if err != nil {
		t.Fatalf("first sync: %v", err)
	}
	head, _ := up.Index.Head(ctx)
	if !c.Initial || c.To != head || c.From != "" {
		t.Fatalf("first sync changes = %+v, want initial to %s", c, head)
	}
	if st := m.Status(); st.Commit != head || !st.Ready() || st.LastError != nil || st.LastSuccess.IsZero() {
		t.Fatalf("status after first sync: %+v", st)
	}
	// The mirror is what git http-backend needs: main checked out, HEAD
	// on main, uploadpack enabled, receivepack untouched.
	if got := testsupport.Git(t, m.Dir(), "symbolic-ref", "HEAD"); got != "refs/heads/main" {
		t.Errorf("HEAD -> %s", got)
	}
	if got := testsupport.Git(t, m.Dir(), "config", "http.uploadpack"); got != "true" {
		t.Errorf("http.uploadpack = %q", got)
	}
	if _, err := testsupport.TryGit(t, m.Dir(), "config", "http.receivepack"); err == nil {
		t.Errorf("http.receivepack is set")
	}
	if got := testsupport.Git(t, m.Dir(), "status", "--porcelain"); got != "" {
		t.Errorf("work tree not clean: %s", got)
	}
	vs, err := m.Lookups().Versions(ctx, "alice/foo")
	if err != nil || strings.Join(versionsOf(vs), " ") != "alice/foo@0.1.0 alice/foo@0.2.0" {
		t.Fatalf("Versions = %v, %v", versionsOf(vs), err)
	}

	// Nothing new upstream: nothing changes.
	c, err = m.Sync(ctx)
	if err != nil || !c.Empty() || c.To != head {
		t.Fatalf("no-op sync: %+v, %v", c, err)
	}

	// A new version, a new module, and a yank of an existing version.
	if err := up.Index.AddVersion(ctx, "alice/foo", "0.3.0", map[string]string{"bob/lib/nested": "0.1.0"}); err != nil {
		t.Fatal(err)
	}
	if err := up.Index.AddVersion(ctx, "carol/new/mod", "1.0.0", nil); err != nil {
		t.Fatal(err)
	}
	if err := up.Index.AddVersionRaw(ctx, "bob/lib/nested", []byte(`{"name": "bob/lib/nested", "version": "0.1.0", "checksum": "`+sum("c")+`", "yanked": true}`)); err != nil {
		t.Fatal(err)
	}
	c, err = m.Sync(ctx)
	if err != nil {
		t.Fatalf("incremental sync: %v", err)
	}
	newHead, _ := up.Index.Head(ctx)
	if c.From != head || c.To != newHead || c.Initial || c.Rewritten {
		t.Fatalf("incremental changes = %+v", c)
	}
	if got := strings.Join(c.Modules, " "); got != "alice/foo bob/lib/nested carol/new/mod" {
		t.Errorf("Modules = %q", got)
	}
	if got := strings.Join(versionsOf(c.Added), " "); got != "alice/foo@0.3.0 carol/new/mod@1.0.0" {
		t.Errorf("Added = %q", got)
	}
	if got := versionsOf(c.Changed); len(got) != 1 || got[0] != "bob/lib/nested@0.1.0" || !c.Changed[0].Yanked {
		t.Errorf("Changed = %v", got)
	}
	if len(c.Removed) != 0 {
		t.Errorf("Removed = %v", versionsOf(c.Removed))
	}
	// Lookups see the new state: the cache of alice/foo was dropped.
	v, ok, err := m.Lookups().Lookup(ctx, "alice/foo", "0.3.0")
	if err != nil || !ok || v.Checksum != up.Downloads.Checksum("alice/foo", "0.3.0") || v.Deps["bob/lib/nested"].Version != "0.1.0" {
		t.Fatalf("Lookup new version = %+v, %v, %v", v, ok, err)
	}
	v, ok, err = m.Lookups().Lookup(ctx, "bob/lib/nested", "0.1.0")
	if err != nil || !ok || !v.Yanked {
		t.Fatalf("Lookup yanked version = %+v, %v, %v", v, ok, err)
	}
	if got := testsupport.Git(t, m.Dir(), "rev-parse", "HEAD"); got != newHead {
		t.Errorf("work tree at %s, want %s", got, newHead)
	}
}

func TestSyncUpstreamDownKeepsMirror(t *testing.T) {
	// Not parallel: while its upstream is down, a parallel test's server
	// could take the freed port and answer.
	ctx := ctxT(t)
	up := startUpstream(t, smallIndex(t))

	t.Run("first sync fails cleanly", func(t *testing.T) {
		if err := up.Down(); err != nil {
			t.Fatal(err)
		}
		defer up.Up()
		m := newTestMirror(t, up.IndexURL(), nil)
		if _, err := m.Sync(ctx); err == nil {
			t.Fatal("sync with upstream down succeeded")
		}
		if _, err := os.Stat(m.Dir()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("failed first sync left %s: %v", m.Dir(), err)
		}
		entries := besideMirror(m)
		if len(entries) != 0 {
			t.Errorf("failed first sync left %v beside the mirror", entries)
		}
		if st := m.Status(); st.LastError == nil || st.Ready() || st.Failures != 1 {
			t.Errorf("status = %+v", st)
		}
	})

	t.Run("later sync fails and keeps the mirror", func(t *testing.T) {
		m := newTestMirror(t, up.IndexURL(), nil)
		if _, err := m.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		before := m.Status()
		if err := up.Index.AddVersion(ctx, "alice/foo", "0.9.0", nil); err != nil {
			t.Fatal(err)
		}
		if err := up.Down(); err != nil {
			t.Fatal(err)
		}
		_, err := m.Sync(ctx)
		if err == nil {
			t.Fatal("sync with upstream down succeeded")
		}
		st := m.Status()
		if st.Commit != before.Commit || st.LastError == nil || st.LastSuccess != before.LastSuccess || st.Failures != 1 {
			t.Errorf("status after failure = %+v (before %+v)", st, before)
		}
		if _, ok, err := m.Lookups().Lookup(ctx, "alice/foo", "0.2.0"); !ok || err != nil {
			t.Errorf("lookup after failed sync: %v, %v", ok, err)
		}
		if got := testsupport.Git(t, m.Dir(), "status", "--porcelain"); got != "" {
			t.Errorf("work tree not clean: %s", got)
		}
		// Upstream answering errors instead of refusing connections.
		if err := up.Up(); err != nil {
			t.Fatal(err)
		}
		up.Faults.FailWith(500, testupstream.OnPrefix(testupstream.PrefixIndex))
		if _, err := m.Sync(ctx); err == nil {
			t.Fatal("sync with upstream failing succeeded")
		}
		up.Faults.Clear()
		c, err := m.Sync(ctx)
		if err != nil || len(c.Added) != 1 || c.Added[0].Version != "0.9.0" {
			t.Fatalf("sync after recovery: %+v, %v", c, err)
		}
		if st := m.Status(); st.LastError != nil {
			t.Errorf("LastError after recovery: %v", st.LastError)
		}
	})
}

func TestSyncFollowsRewrittenHistory(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	up := startUpstream(t, smallIndex(t))
	m := newTestMirror(t, up.IndexURL(), nil)
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	old := m.Status().Commit
	if err := up.Index.AddVersion(ctx, "alice/foo", "0.4.0", nil); err != nil {
		t.Fatal(err)
	}
	if err := up.Index.RewriteHistory(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := m.Sync(ctx)
	if err != nil {
		t.Fatalf("sync after rewrite: %v", err)
	}
	head, _ := up.Index.Head(ctx)
	if !c.Rewritten || c.From != old || c.To != head {
		t.Fatalf("changes = %+v, want rewritten %s -> %s", c, old, head)
	}
	if got := versionsOf(c.Added); len(got) != 1 || got[0] != "alice/foo@0.4.0" {
		t.Errorf("Added = %v", got)
	}
	if _, ok, _ := m.Lookups().Lookup(ctx, "alice/foo", "0.4.0"); !ok {
		t.Error("new version not visible after rewrite")
	}
	if got := testsupport.Git(t, m.Dir(), "rev-parse", "refs/heads/main"); got != head {
		t.Errorf("main = %s, want %s", got, head)
	}
}

func TestConcurrentSyncCollapses(t *testing.T) {
	ctx := ctxT(t)
	up := startUpstream(t, smallIndex(t))
	var count countGit
	m := newTestMirror(t, up.IndexURL(), nil)
	m.onGit = count.hook
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := up.Index.AddVersion(ctx, "alice/foo", "0.5.0", nil); err != nil {
		t.Fatal(err)
	}
	// Every index request is held long enough that all callers join the
	// first one's run.
	up.Faults.Delay(time.Second, testupstream.OnPrefix(testupstream.PrefixIndex))
	const callers = 8
	var wg sync.WaitGroup
	results := make([]Changes, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = m.Sync(ctx)
		}()
	}
	wg.Wait()
	for i := range callers {
		if errs[i] != nil || len(results[i].Added) != 1 || results[i].To != results[0].To {
			t.Errorf("caller %d: %+v, %v", i, results[i], errs[i])
		}
	}
	if n := count.get("fetch"); n != 2 {
		t.Errorf("git fetch ran %d times, want 2 (first sync + one shared)", n)
	}
	if st := m.Status(); st.Syncs != 2 {
		t.Errorf("Syncs = %d, want 2", st.Syncs)
	}
}

func TestSyncCallerCancelDoesNotBreakSharedRun(t *testing.T) {
	ctx := ctxT(t)
	up := startUpstream(t, smallIndex(t))
	m := newTestMirror(t, up.IndexURL(), nil)
	up.Faults.Delay(time.Second, testupstream.OnPrefix(testupstream.PrefixIndex))
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	longDone := make(chan error, 1)
	f := m.syncs.start(ctx) // the patient caller is already waiting
	go func() { _, err := m.syncs.wait(ctx, f); longDone <- err }()
	if _, err := m.Sync(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sync with short ctx: %v", err)
	}
	if err := <-longDone; err != nil {
		t.Fatalf("patient caller: %v", err)
	}
	if st := m.Status(); !st.Ready() || st.Syncs != 1 || st.Failures != 0 {
		t.Fatalf("status = %+v", st)
	}
}

func TestSyncAbandonedIsCancelled(t *testing.T) {
	ctx := ctxT(t)
	up := startUpstream(t, smallIndex(t))
	m := newTestMirror(t, up.IndexURL(), nil)
	up.Faults.Hang(testupstream.OnPrefix(testupstream.PrefixIndex))
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := m.Sync(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sync with short ctx: %v", err)
	}
	start := time.Now()
	m.syncs.waitIdle()
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("abandoned sync took %v to stop", d)
	}
	if st := m.Status(); st.Syncs != 0 || st.LastError != nil || st.Ready() {
		t.Errorf("an abandoned sync was recorded: %+v", st)
	}
	if entries := besideMirror(m); len(entries) != 0 {
		t.Errorf("abandoned first clone left %v", entries)
	}
	up.Faults.Clear()
	if _, err := m.Sync(ctx); err != nil {
		t.Fatalf("sync after abandon: %v", err)
	}
}

// A client that cloned the mirror shallowly, as moon does, must be able to
// pull a fast-forward after the mirror synced new commits, even several.
func TestClientPullFastForwards(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	up := startUpstream(t, smallIndex(t))
	m := newTestMirror(t, up.IndexURL(), nil)
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	mirrorURL := "file://" + m.Dir()
	client := filepath.Join(t.TempDir(), "client")
	testsupport.Git(t, "", "clone", "--depth", "1", "--single-branch", "--no-tags", mirrorURL, client)

	for round, versions := range [][]string{{"1.0.0"}, {"1.1.0", "1.2.0", "1.3.0"}} {
		for _, v := range versions {
			if err := up.Index.AddVersion(ctx, "alice/foo", v, nil); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := m.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		before := testsupport.Git(t, client, "rev-parse", "HEAD")
		testsupport.Git(t, client, "pull", "--ff-only", "origin", "main")
		after := testsupport.Git(t, client, "rev-parse", "HEAD")
		head, _ := up.Index.Head(ctx)
		if after != head {
			t.Fatalf("round %d: client at %s, want %s", round, after, head)
		}
		testsupport.Git(t, client, "merge-base", "--is-ancestor", before, after)
		// A fresh shallow clone of the grown mirror works too.
		fresh := filepath.Join(t.TempDir(), "fresh")
		testsupport.Git(t, "", "clone", "--depth", "1", "--single-branch", "--no-tags", mirrorURL, fresh)
	}
	data, err := os.ReadFile(filepath.Join(client, "user", "alice", "foo.index"))
	if err != nil || !strings.Contains(string(data), `"1.3.0"`) {
		t.Fatalf("client index file: %v\n%s", err, data)
	}
}

func TestNewAdoptsExistingMirror(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	up := startUpstream(t, smallIndex(t))
	m := newTestMirror(t, up.IndexURL(), nil)
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	again, err := New(Options{Dir: m.Dir(), UpstreamURL: up.IndexURL(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if again.Status().Commit != m.Status().Commit {
		t.Fatalf("reopened mirror commit %q, want %q", again.Status().Commit, m.Status().Commit)
	}
	if _, ok, err := again.Lookups().Lookup(ctx, "alice/foo", "0.1.0"); !ok || err != nil {
		t.Fatalf("lookup in reopened mirror: %v %v", ok, err)
	}
	c, err := again.Sync(ctx)
	if err != nil || !c.Empty() {
		t.Fatalf("sync of reopened mirror: %+v %v", c, err)
	}
}

func TestNewRefusesForeignDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "precious"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Dir: dir, UpstreamURL: "http://127.0.0.1:1/git/index"}); err == nil {
		t.Fatal("New accepted a non-empty non-repository directory")
	}
	for _, b := range []string{"-x", "a..b", "a b", "/a", "a/", "x.lock"} {
		if _, err := New(Options{Dir: t.TempDir(), UpstreamURL: "http://127.0.0.1:1/", Branch: b}); err == nil {
			t.Errorf("branch %q accepted", b)
		}
	}
	if _, err := New(Options{Dir: t.TempDir(), UpstreamURL: "--upload-pack=evil"}); err == nil {
		t.Error("option-like upstream URL accepted")
	}
}

// An empty directory (e.g. a freshly created volume) is fine for a first
// clone.
func TestFirstSyncIntoEmptyDir(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	up := startUpstream(t, smallIndex(t))
	dir := filepath.Join(t.TempDir(), "index")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m := newTestMirror(t, up.IndexURL(), func(o *Options) { o.Dir = dir })
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := m.Lookups().Lookup(ctx, "alice/foo", "0.1.0"); !ok || err != nil {
		t.Fatalf("lookup: %v %v", ok, err)
	}
}

// besideMirror lists what is in the mirror's parent directory apart from the
// mirror's sync lock file, which stays by design.
func besideMirror(m *Mirror) []string {
	entries, _ := os.ReadDir(filepath.Dir(m.Dir()))
	var names []string
	for _, e := range entries {
		if filepath.Join(filepath.Dir(m.Dir()), e.Name()) != lockPath(m.Dir()) {
			names = append(names, e.Name())
		}
	}
	return names
}
