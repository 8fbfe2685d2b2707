package indexsync

import (
	"context"

	"sync"
	"sync/atomic"
	"testing"
	"time"

	"moonbit-registry/internal/testupstream"
)

// A client's request brings in what upstream published since the last
// look, at most one look per CheckInterval however many requests come.
func TestFreshenLooksAtUpstreamOncePerInterval(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	up := startUpstream(t, smallIndex(t))
	// An interval no test run outlasts: whether a look is due is set
	// below, not left to the clock.
	m := newTestMirror(t, up.IndexURL(), func(o *Options) { o.CheckInterval = time.Hour })
	looks := countLooks(m)
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	before := m.Commit()
	if err := up.Index.AddVersion(ctx, "fresh/module", "0.1.0", nil); err != nil {
		t.Fatal(err)
	}
	m.Freshen(ctx) // the sync just happened: no look
	if looks.Load() != 0 || m.Commit() != before {
		t.Fatalf("looked %d times right after a sync", looks.Load())
	}
	// The interval has passed, as far as the mirror can tell: its last
	// sync and its last look are forgotten.
	m.state.mu.Lock()
	m.state.status.LastSync = time.Time{}
	m.state.mu.Unlock()
	m.looks.lookedAt.Store(0)
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() { defer wg.Done(); m.Freshen(ctx) }()
	}
	wg.Wait()
	// The look's sync may outlast the check's time; it runs on.
	m.syncs.waitIdle()
	if n := looks.Load(); n != 1 {
		t.Errorf("50 requests looked at upstream %d times, want 1", n)
	}
	if _, ok, _ := m.Lookups().Lookup(ctx, "fresh/module", "0.1.0"); !ok {
		t.Errorf("the version published upstream is not in the mirror after the look (at %s, was %s)", m.Commit(), before)
	}
}

// Upstream refusing, or hanging: the request is answered from the mirror,
// at once or after the check's few seconds at most. The limits are far
// from what is measured and from what a failure would take (the mirror's
// 30 s git timeout), so load cannot decide them.
func TestFreshenUpstreamTrouble(t *testing.T) {
	// Not parallel: while its upstream is down, a parallel test's server
	// could take the freed port and answer.
	ctx := context.Background()
	for _, tt := range []struct {
		name    string
		breakIt func(up *testupstream.Upstream) error
		limit   time.Duration
	}{
		{"down", func(up *testupstream.Upstream) error { return up.Down() }, checkTimeout / 2},
		{"hanging", func(up *testupstream.Upstream) error {
			up.Faults.Hang(testupstream.OnPrefix(testupstream.PrefixIndex))
			return nil
		}, 2 * checkTimeout},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := startUpstream(t, smallIndex(t))
			m := newTestMirror(t, up.IndexURL(), func(o *Options) { o.CheckInterval = time.Millisecond })
			looks := countLooks(m)
			if _, err := m.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if err := tt.breakIt(up); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond)
			start := time.Now()
			m.Freshen(ctx)
			if d := time.Since(start); d > tt.limit {
				t.Errorf("Freshen took %s, want at most %s", d, tt.limit)
			}
			if looks.Load() != 1 {
				t.Errorf("looked at upstream %d times, want 1", looks.Load())
			}
			up.Faults.Clear()
		})
	}
}

// countLooks counts m's looks at upstream's tip (git ls-remote).
func countLooks(m *Mirror) *atomic.Int64 {
	var looks atomic.Int64
	m.onGit = func(args []string) {
		if len(args) > 0 && args[0] == "ls-remote" {
			looks.Add(1)
		}
	}
	return &looks
}
