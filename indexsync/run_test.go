package indexsync

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"moonbit-registry/internal/testupstream"
)

// waitFor polls cond for at most d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRunSyncsPeriodicallyAndSurvivesErrors(t *testing.T) {
	ctx := ctxT(t)
	up := startUpstream(t, smallIndex(t))
	if err := up.Down(); err != nil {
		t.Fatal(err)
	}
	m := newTestMirror(t, up.IndexURL(), func(o *Options) { o.Interval = 200 * time.Millisecond })
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { m.Run(runCtx); close(done) }()

	waitFor(t, 20*time.Second, "two failed syncs", func() bool { return m.Status().Failures >= 2 })
	if err := up.Up(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "first successful sync", func() bool { return m.Status().Ready() })
	if err := up.Index.AddVersion(ctx, "alice/foo", "2.0.0", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "new version", func() bool {
		_, ok, _ := m.Lookups().Lookup(ctx, "alice/foo", "2.0.0")
		return ok
	})
	stop()
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	// Let a sync the cancel left running finish before the test's
	// directories go away.
	_, _ = m.Sync(ctx)
}

func TestRunStopsPromptlyDuringHungSync(t *testing.T) {
	ctx := ctxT(t)
	up := startUpstream(t, smallIndex(t))
	up.Faults.Hang(testupstream.OnPrefix(testupstream.PrefixIndex))
	m := newTestMirror(t, up.IndexURL(), nil)
	var count countGit
	m.onGit = count.hook
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { m.Run(runCtx); close(done) }()
	waitFor(t, 20*time.Second, "fetch to start", func() bool { return count.get("fetch") == 1 })
	time.Sleep(100 * time.Millisecond)
	stop()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return while a sync hung")
	}
	m.syncs.mu.Lock()
	running := m.syncs.current != nil
	m.syncs.mu.Unlock()
	if running {
		t.Error("a sync is still running after Run returned")
	}
}

func TestRequestRefreshRateLimit(t *testing.T) {
	ctx := ctxT(t)
	up := startUpstream(t, smallIndex(t))
	var count countGit
	m := newTestMirror(t, up.IndexURL(), func(o *Options) { o.RefreshMinInterval = time.Hour })
	m.onGit = count.hook

	// The first refresh of a never-synced mirror syncs.
	if err := m.RequestRefresh(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count.get("fetch"); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}
	if err := up.Index.AddVersion(ctx, "alice/foo", "3.0.0", nil); err != nil {
		t.Fatal(err)
	}
	// Inside the window: no git, no new version.
	for range 5 {
		if err := m.RequestRefresh(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := count.get("fetch"); n != 1 {
		t.Fatalf("fetches inside the window = %d, want 1", n)
	}
	if _, ok, _ := m.Lookups().Lookup(ctx, "alice/foo", "3.0.0"); ok {
		t.Fatal("version visible without a sync")
	}

	// A failed sync's error is what callers inside the window get.
	if err := up.Down(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Sync(ctx); err == nil {
		t.Fatal("sync with upstream down succeeded")
	}
	if err := m.RequestRefresh(ctx); err == nil {
		t.Fatal("RequestRefresh inside the window after a failure returned nil")
	}
	if err := up.Up(); err != nil {
		t.Fatal(err)
	}

	// Window over: concurrent callers share one sync.
	m.opts.RefreshMinInterval = 300 * time.Millisecond
	time.Sleep(350 * time.Millisecond)
	before := count.get("fetch")
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = m.RequestRefresh(ctx) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	if n := count.get("fetch") - before; n != 1 {
		t.Errorf("fetches for 8 concurrent refreshes = %d, want 1", n)
	}
	if _, ok, _ := m.Lookups().Lookup(ctx, "alice/foo", "3.0.0"); !ok {
		t.Error("version not visible after refresh")
	}
}

// Ready tells a mirror that cannot sync apart from one that is fine: before
// the first sync it says what failed and what to check; once syncs have
// failed for StaleAfter it says for how long, how often, why and when the
// next try is; a success makes it ready again.
func TestReadyReportsFailingSyncs(t *testing.T) {
	ctx := ctxT(t)
	up := startUpstream(t, smallIndex(t))
	if err := up.Down(); err != nil {
		t.Fatal(err)
	}
	m := newTestMirror(t, up.IndexURL(), func(o *Options) {
		o.Interval = 200 * time.Millisecond
		o.StaleAfter = 600 * time.Millisecond
	})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { m.Run(runCtx); close(done) }()
	defer func() { stop(); <-done; _, _ = m.Sync(ctx) }()

	waitFor(t, 20*time.Second, "a failed first sync", func() bool { return m.Status().Failures >= 1 })
	err := m.Ready()
	if !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "index sync failing for") || !strings.Contains(err.Error(), "upstream.index_url") {
		t.Errorf("Ready before any sync succeeded = %v; want ErrNotReady with the failure and what to check", err)
	}

	if err := up.Up(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "a successful sync", func() bool { return m.Ready() == nil })
	if err := up.Down(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "a failing sync", func() bool { return m.Status().Streak >= 1 })
	if st := m.Status(); time.Since(st.FailingSince) < m.opts.StaleAfter/2 {
		if err := m.Ready(); err != nil {
			t.Errorf("Ready right after one failure = %v, want nil (not stale yet)", err)
		}
	}
	// "next try in" is said between attempts, not while one runs: wait for
	// such a moment rather than race the retry loop for it.
	var msg string
	waitFor(t, 20*time.Second, "the mirror to be stale between two attempts", func() bool {
		err := m.Ready()
		if !errors.Is(err, ErrStale) || !strings.Contains(err.Error(), "next try in") {
			return false
		}
		msg = err.Error()
		return true
	})
	for _, want := range []string{"index sync failing for", "attempts)", "next try in"} {
		if !strings.Contains(msg, want) {
			t.Errorf("stale message %q does not say %q", msg, want)
		}
	}
	if err := up.Up(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "ready again", func() bool { return m.Ready() == nil })
}
