package cache_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"moonbit-registry/cache"
	"moonbit-registry/module"
	"moonbit-registry/store"
	"moonbit-registry/store/disk"
	"moonbit-registry/store/storetest"
)

func TestEnsureAllCountsAndKeepsGoing(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, nil)
	var mvs []module.Version
	for _, v := range []string{"0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0"} {
		mv := module.Version{Module: "batch/mod", Version: v}
		env.publish(mv)
		mvs = append(mvs, mv)
	}
	// Already cached before the run.
	if _, err := env.cache.Ensure(ctx, mvs[0]); err != nil {
		t.Fatal(err)
	}
	// In the index, but upstream has no archive: fails, and the run goes on.
	missing := module.Version{Module: "batch/mod", Version: "0.6.0"}
	env.index.set(missing, storetest.Sum([]byte("whatever")))
	mvs = append(mvs, missing)

	var mu sync.Mutex
	events := 0
	res := env.cache.EnsureAll(ctx, mvs, 3, func(ev cache.BatchEvent) { mu.Lock(); events++; mu.Unlock() })
	if res.Selected != 6 || res.Cached != 1 || res.Fetched != 4 || len(res.Failed) != 1 {
		t.Fatalf("result = %+v, want 6 selected, 1 cached, 4 fetched, 1 failed", res)
	}
	if res.Failed[0].Archive != missing || !errors.Is(res.Failed[0].Err, cache.ErrNotFound) {
		t.Errorf("failure = %+v, want %s not found", res.Failed[0], missing)
	}
	if want := int64(4 * len(storetest.Body(mvs[1]))); res.Bytes != want {
		t.Errorf("bytes = %d, want %d", res.Bytes, want)
	}
	if events != 6 {
		t.Errorf("progress called %d times, want 6", events)
	}

	// A second run finds everything that exists cached and fetches nothing.
	before := env.up.requests.Load()
	res = env.cache.EnsureAll(ctx, mvs[:5], 3, nil)
	if res.Cached != 5 || res.Fetched != 0 || len(res.Failed) != 0 || env.up.requests.Load() != before {
		t.Errorf("second run = %+v, upstream requests %d -> %d", res, before, env.up.requests.Load())
	}
}

// unsyncedStore is the disk store whose batches cannot be made durable.
type unsyncedStore struct{ *disk.Store }

var errNoSync = errors.New("fsync: input/output error")

func (s unsyncedStore) Batch(ctx context.Context) (context.Context, func() error) {
	ctx, _ = s.Store.Batch(ctx)
	return ctx, func() error { return errNoSync }
}

// TestEnsureAllReportsWhatWasNotMadeDurable: when the store cannot make a
// run's archives durable at the end, what was fetched in the run is
// reported failed (with the store's error), what was cached before is not.
func TestEnsureAllReportsWhatWasNotMadeDurable(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, func(c *envConfig) { c.wrap = func(s *disk.Store) store.Store { return unsyncedStore{s} } })
	var mvs []module.Version
	for _, v := range []string{"0.1.0", "0.2.0", "0.3.0"} {
		mv := module.Version{Module: "batch/mod", Version: v}
		env.publish(mv)
		mvs = append(mvs, mv)
	}
	if _, err := env.cache.Ensure(ctx, mvs[0]); err != nil {
		t.Fatal(err)
	}
	res := env.cache.EnsureAll(ctx, mvs, 2, nil)
	if res.Cached != 1 || res.Fetched != 0 || res.Bytes != 0 || len(res.Failed) != 2 {
		t.Fatalf("result = %+v, want 1 cached, 0 fetched, 2 failed", res)
	}
	for _, f := range res.Failed {
		if !errors.Is(f.Err, errNoSync) || f.Archive == mvs[0] {
			t.Errorf("failure %+v, want the flush's error for a fetched archive", f)
		}
	}
}

func TestEnsureAllCancelledNeverLooksComplete(t *testing.T) {
	env := newTestEnv(t, nil)
	var mvs []module.Version
	for _, v := range []string{"1.0.0", "1.0.1", "1.0.2", "1.0.3"} {
		mv := module.Version{Module: "batch/cut", Version: v}
		env.publish(mv)
		mvs = append(mvs, mv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := env.cache.EnsureAll(ctx, mvs, 2, nil)
	if got := res.Cached + res.Fetched + len(res.Failed); got != len(mvs) {
		t.Fatalf("accounted for %d of %d archives: %+v", got, len(mvs), res)
	}
	if len(res.Failed) == 0 {
		t.Fatalf("a cancelled run reported no failures: %+v", res)
	}
}

func TestVerify(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, nil)
	good := module.Version{Module: "verify/mod", Version: "1.0.0"}
	bad := module.Version{Module: "verify/mod", Version: "1.1.0"}
	orphan := module.Version{Module: "verify/gone", Version: "0.1.0"}
	absent := module.Version{Module: "verify/mod", Version: "2.0.0"}
	for _, mv := range []module.Version{good, bad, orphan} {
		env.publish(mv)
		if _, err := env.cache.Ensure(ctx, mv); err != nil {
			t.Fatal(err)
		}
	}
	env.publish(absent)
	// Corrupt one archive on disk and drop one module from the index.
	if err := os.WriteFile(filepath.Join(env.root, filepath.FromSlash(bad.RelPath())), []byte("corrupt"), 0o644); err != nil {
		t.Fatal(err)
	}
	env.index.mu.Lock()
	delete(env.index.sums, orphan.String())
	env.index.mu.Unlock()

	kinds := func(res cache.VerifyResult) map[module.Version]string {
		m := map[module.Version]string{}
		for _, p := range res.Problems {
			m[p.Archive] = p.Kind
		}
		return m
	}
	tests := []struct {
		name     string
		expected []module.Version
		want     map[module.Version]string
		checked  int
	}{
		{name: "whole store", want: map[module.Version]string{bad: "mismatch", orphan: "orphan"}, checked: 3},
		{name: "expected list", expected: []module.Version{good, bad, absent}, want: map[module.Version]string{bad: "mismatch", absent: "missing"}, checked: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := env.cache.Verify(ctx, tt.expected, false)
			if err != nil {
				t.Fatal(err)
			}
			got := kinds(res)
			if len(got) != len(tt.want) || res.Checked != tt.checked {
				t.Fatalf("problems = %v (checked %d), want %v (checked %d)", got, res.Checked, tt.want, tt.checked)
			}
			for mv, k := range tt.want {
				if got[mv] != k {
					t.Errorf("%s: %q, want %q", mv, got[mv], k)
				}
			}
		})
	}

	res, err := env.cache.Verify(ctx, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Problems {
		if !p.Purged {
			t.Errorf("%s not purged", p.Archive)
		}
	}
	if env.cache.Cached(ctx, bad) || env.cache.Cached(ctx, orphan) || !env.cache.Cached(ctx, good) {
		t.Error("purge removed the wrong archives")
	}
	if res, _ := env.cache.Verify(ctx, nil, false); len(res.Problems) != 0 {
		t.Errorf("after purge: %+v", res.Problems)
	}
	// The purged archive comes back on demand, verified.
	if _, err := env.cache.Ensure(ctx, bad); err != nil || !env.cache.Cached(ctx, bad) {
		t.Errorf("re-fetch after purge: %v", err)
	}
}

// A selection larger than the size limit evicts its own earlier archives:
// EnsureAll must report those as failed, never the run as complete.
func TestEnsureAllReportsArchivesEvictedDuringTheRun(t *testing.T) {
	env, _ := newEvictEnv(t, roomFor(3))
	var mvs []module.Version
	for i := 1; i <= 6; i++ {
		env.publish(evictMV(i))
		mvs = append(mvs, evictMV(i))
	}
	res := env.cache.EnsureAll(context.Background(), mvs, 1, nil)
	kept := 0
	for _, mv := range mvs {
		if env.cache.Cached(context.Background(), mv) {
			kept++
		}
	}
	if res.Fetched != kept || len(res.Failed) != len(mvs)-kept || kept == len(mvs) {
		t.Fatalf("fetched %d, failed %d, but %d of %d are stored: %+v", res.Fetched, len(res.Failed), kept, len(mvs), res)
	}
	for _, f := range res.Failed {
		if !errors.Is(f.Err, cache.ErrEvictedDuringRun) {
			t.Errorf("%s: %v, want ErrEvictedDuringRun", f.Archive, f.Err)
		}
	}
}

// One malformed index line is reported and never stops the check of the
// others, nor is its archive purged.
func TestVerifyGoesOnPastABadIndexLine(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, nil)
	var mvs []module.Version
	for _, v := range []string{"0.1.0", "0.2.0", "0.3.0"} {
		mv := module.Version{Module: "verify/lines", Version: v}
		env.publish(mv)
		if _, err := env.cache.Ensure(ctx, mv); err != nil {
			t.Fatal(err)
		}
		mvs = append(mvs, mv)
	}
	// The middle one's stored bytes are corrupt too: still reported.
	if err := os.WriteFile(filepath.Join(env.root, filepath.FromSlash(mvs[2].RelPath())), []byte("corrupt"), 0o644); err != nil {
		t.Fatal(err)
	}
	env.index.mu.Lock()
	env.index.broken = map[string]error{mvs[0].String(): errors.New(`index entry has malformed checksum "xyz"`)}
	env.index.mu.Unlock()
	for i, expected := range [][]module.Version{nil, mvs} {
		purge := i == 1
		res, err := env.cache.Verify(ctx, expected, purge)
		if err != nil {
			t.Fatalf("Verify(%v): %v", expected, err)
		}
		got := map[string]string{}
		for _, p := range res.Problems {
			got[p.Archive.Version+" "+p.Kind] = fmt.Sprint(p.Purged)
		}
		if res.Checked != 3 || len(got) != 2 || got["0.1.0 unverifiable"] != "false" || got["0.3.0 mismatch"] != fmt.Sprint(purge) {
			t.Errorf("Verify(%v, purge %v): checked %d, problems %v; want 3 checked, 0.1.0 unverifiable (kept), 0.3.0 mismatch", expected, purge, res.Checked, got)
		}
	}
	if _, err := env.store.Open(ctx, mvs[0]); err != nil {
		t.Errorf("the archive of the bad index line was removed: %v", err)
	}
}

// TestVerifyPurgeKeepsPrivate: an archive Options.Keep names (a private
// module's) is reported but never purged, orphaned or corrupt.
func TestVerifyPurgeKeepsPrivate(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, func(c *envConfig) {
		c.cache.Keep = func(mv module.Version) bool { return strings.HasPrefix(mv.Module, "acme/") }
	})
	private := module.Version{Module: "acme/lib", Version: "1.0.0"}
	public := module.Version{Module: "pub/lib", Version: "1.0.0"}
	for _, mv := range []module.Version{private, public} {
		env.publish(mv)
		if _, err := env.cache.Ensure(ctx, mv); err != nil {
			t.Fatal(err)
		}
		env.index.mu.Lock()
		delete(env.index.sums, mv.String()) // both orphaned, say while an index rebuild is pending
		env.index.mu.Unlock()
	}
	res, err := env.cache.Verify(ctx, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) != 2 {
		t.Fatalf("problems %+v, want both orphans reported", res.Problems)
	}
	for _, p := range res.Problems {
		if want := p.Archive == public; p.Purged != want {
			t.Errorf("%s purged = %v, want %v (%s)", p.Archive, p.Purged, want, p.Detail)
		}
	}
	if !env.cache.Cached(ctx, private) {
		t.Error("the private archive was deleted")
	}
}
