package indexsync

import (
	"context"
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
	if err := up.AddVersion(ctx, "alice/foo", "2.0.0", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "new version", func() bool {
		_, ok, _ := m.Lookup(ctx, "alice/foo", "2.0.0")
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
	up.Hang(testupstream.OnPrefix(testupstream.PrefixIndex))
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
	m.flightMu.Lock()
	running := m.current != nil
	m.flightMu.Unlock()
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
	if err := up.AddVersion(ctx, "alice/foo", "3.0.0", nil); err != nil {
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
	if _, ok, _ := m.Lookup(ctx, "alice/foo", "3.0.0"); ok {
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
	if _, ok, _ := m.Lookup(ctx, "alice/foo", "3.0.0"); !ok {
		t.Error("version not visible after refresh")
	}
}
