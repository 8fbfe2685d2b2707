package cache_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"moonbit-registry/cache"
	"moonbit-registry/internal/testsupport"
	"moonbit-registry/module"
	"moonbit-registry/store"
	"moonbit-registry/store/disk"
	"moonbit-registry/store/storetest"
	"moonbit-registry/upstream"

	"github.com/rs/zerolog"
)

// evictMV is the i-th test archive. Versions 1..9 have names of equal
// length, so their bodies are all the same size.
func evictMV(i int) module.Version {
	return module.Version{Module: "evict/pkg", Version: fmt.Sprintf("0.%d.0", i)}
}

// evictSize is what every evictMV archive takes on disk (allocated blocks,
// which is what the size limit counts).
var evictSize = sync.OnceValue(func() int64 { return testsupport.StoredSize(storetest.Body(evictMV(1))) })

// roomFor is a limit that holds n archives but not n+1, with n still under
// the 90% low-water mark (so a pass leaves exactly n).
func roomFor(n int) int64 { return int64(n)*evictSize() + evictSize()/2 }

// newEvictEnv is a test env with a size limit whose start-up walk is over.
func newEvictEnv(t *testing.T, maxBytes int64, tweak ...func(*envConfig)) (*testEnv, *testsupport.LogBuffer) {
	t.Helper()
	logs := &testsupport.LogBuffer{}
	env := newTestEnv(t, func(c *envConfig) {
		c.disk.MaxBytes = maxBytes
		c.disk.Logger = zerolog.New(logs)
		for _, f := range tweak {
			f(c)
		}
	})
	return env, logs
}

// reopen builds a second store and Cache on env's root, as a restart
// would, and waits for the store's walk.
func reopen(t *testing.T, env *testEnv, maxBytes int64) (*cache.Cache, *testsupport.LogBuffer) {
	t.Helper()
	logs := &testsupport.LogBuffer{}
	c, _ := openCache(t, envConfig{
		cache: cache.Options{Index: env.index, Logger: zerolog.New(logs)},
		fetch: upstream.FetcherOptions{DownloadURL: env.up.srv.URL, RetryBackoff: time.Millisecond},
		disk:  disk.Options{Root: env.root, MaxBytes: maxBytes, Logger: zerolog.New(logs)},
	})
	return c, logs
}

// onDisk lists the archives under root and their total size.
func onDisk(t *testing.T, root string) (vs []string, total int64) {
	return testsupport.ArchiveFiles(t, root)
}

func versions(is ...int) []string {
	var out []string
	for _, i := range is {
		out = append(out, evictMV(i).Version)
	}
	slices.Sort(out)
	return out
}

// get fetches (or hits) mv, checks its bytes and closes it.
func get(t *testing.T, c *cache.Cache, mv module.Version, want []byte) cache.Outcome {
	t.Helper()
	obj, outcome, err := c.Get(context.Background(), mv)
	if err != nil {
		t.Fatalf("Get %s: %v", mv, err)
	}
	if got := readAll(t, obj); !bytes.Equal(got, want) {
		t.Fatalf("Get %s: %d bytes, not the published ones", mv, len(got))
	}
	return outcome
}

// checkAccounting compares Stats with what is really on disk.
func checkAccounting(t *testing.T, c *cache.Cache, root string) {
	t.Helper()
	vs, total := onDisk(t, root)
	st := c.Stats()
	if st.StoreBytes != total || st.StoreFiles != int64(len(vs)) {
		t.Errorf("Stats StoreBytes=%d StoreFiles=%d, disk holds %d bytes in %d archives %v",
			st.StoreBytes, st.StoreFiles, total, len(vs), vs)
	}
}

func TestEvictKeepsStoreUnderLimit(t *testing.T) {
	max := roomFor(3)
	env, logs := newEvictEnv(t, max)
	for i := 1; i <= 9; i++ {
		get(t, env.cache, evictMV(i), env.publish(evictMV(i)))
		vs, total := onDisk(t, env.root)
		if total > max {
			t.Fatalf("after fetching %d archives: %d bytes on disk (%v), limit %d", i, total, vs, max)
		}
		checkAccounting(t, env.cache, env.root)
	}
	if vs, _ := onDisk(t, env.root); !slices.Equal(vs, versions(7, 8, 9)) {
		t.Errorf("kept %v, want the three most recent %v", vs, versions(7, 8, 9))
	}
	if st := env.cache.Stats(); st.Evictions != 6 || st.Fetches != 9 {
		t.Errorf("Evictions=%d Fetches=%d, want 6 and 9", st.Evictions, st.Fetches)
	}
	// Each eviction is logged with what was evicted, its size and last use.
	recs := logs.Records(t, "archive evicted")
	if len(recs) != 6 {
		t.Fatalf("%d \"archive evicted\" log records, want 6", len(recs))
	}
	for i, rec := range recs {
		if rec["archive"] != evictMV(i+1).String() || rec["bytes"] != float64(evictSize()) || rec["last_used"] == nil || rec["level"] != "info" {
			t.Errorf("eviction log %d = %v, want archive %s, bytes %d, last_used", i, rec, evictMV(i+1), evictSize())
		}
	}
	// Objects still allow sendfile (ServeContent) through the pinning wrapper.
	obj, _, err := env.cache.Get(context.Background(), evictMV(9))
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if _, ok := obj.(syscall.Conn); !ok {
		t.Errorf("object is %T, which does not expose the file descriptor for sendfile", obj)
	}
}

func TestEvictLeastRecentlyUsedFirst(t *testing.T) {
	for _, tc := range []struct {
		name    string
		touch   []int // Get (hits) after storing 1, 2, 3
		evicted int   // which one fetching 4 evicts
	}{
		{"no use: oldest goes", nil, 1},
		{"oldest used again", []int{1}, 2},
		{"two used again", []int{2, 1}, 3},
		{"used in reverse", []int{3, 2, 1}, 3},
		{"newest used", []int{3}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, _ := newEvictEnv(t, roomFor(3))
			bodies := map[int][]byte{}
			for i := 1; i <= 4; i++ {
				bodies[i] = env.publish(evictMV(i))
			}
			for i := 1; i <= 3; i++ {
				get(t, env.cache, evictMV(i), bodies[i])
			}
			for _, i := range tc.touch {
				if o := get(t, env.cache, evictMV(i), bodies[i]); o != cache.OutcomeHit {
					t.Fatalf("Get %d: %s, want hit", i, o)
				}
			}
			get(t, env.cache, evictMV(4), bodies[4])
			var want []int
			for i := 1; i <= 4; i++ {
				if i != tc.evicted {
					want = append(want, i)
				}
			}
			if vs, _ := onDisk(t, env.root); !slices.Equal(vs, versions(want...)) {
				t.Errorf("kept %v, want %v", vs, versions(want...))
			}
		})
	}
}

func TestEvictNeverEvictsOpenArchive(t *testing.T) {
	env, _ := newEvictEnv(t, roomFor(3))
	first := env.publish(evictMV(1))
	obj, _, err := env.cache.Get(context.Background(), evictMV(1))
	if err != nil {
		t.Fatal(err)
	}
	// Fetch more than the limit holds while archive 1 is being "served".
	for i := 2; i <= 6; i++ {
		get(t, env.cache, evictMV(i), env.publish(evictMV(i)))
		if vs, _ := onDisk(t, env.root); !slices.Contains(vs, evictMV(1).Version) {
			t.Fatalf("after fetching %d: the open archive was evicted (disk: %v)", i, vs)
		}
	}
	if vs, _ := onDisk(t, env.root); !slices.Equal(vs, versions(1, 5, 6)) {
		t.Errorf("kept %v, want the open one and the two most recent %v", vs, versions(1, 5, 6))
	}
	if got := readAll(t, obj); !bytes.Equal(got, first) { // readAll closes
		t.Fatal("open archive: wrong bytes")
	}
	checkAccounting(t, env.cache, env.root)
	// Closed, it is the least recently used and goes next.
	get(t, env.cache, evictMV(7), env.publish(evictMV(7)))
	if vs, _ := onDisk(t, env.root); !slices.Equal(vs, versions(5, 6, 7)) {
		t.Errorf("after closing it and fetching another: kept %v, want %v", vs, versions(5, 6, 7))
	}
}

func TestEvictedArchiveIsFetchedAgain(t *testing.T) {
	env, _ := newEvictEnv(t, roomFor(1))
	one, two := env.publish(evictMV(1)), env.publish(evictMV(2))
	get(t, env.cache, evictMV(1), one)
	get(t, env.cache, evictMV(2), two)
	if vs, _ := onDisk(t, env.root); !slices.Equal(vs, versions(2)) {
		t.Fatalf("kept %v, want %v", vs, versions(2))
	}
	if o := get(t, env.cache, evictMV(1), one); o != cache.OutcomeMiss {
		t.Errorf("evicted archive: outcome %s, want miss", o)
	}
	if vs, _ := onDisk(t, env.root); !slices.Equal(vs, versions(1)) {
		t.Errorf("kept %v, want %v", vs, versions(1))
	}
	if st := env.cache.Stats(); st.Fetches != 3 || env.up.requests.Load() != 3 || st.Evictions != 2 {
		t.Errorf("Fetches=%d upstream requests=%d Evictions=%d, want 3, 3, 2", st.Fetches, env.up.requests.Load(), st.Evictions)
	}
}

func TestEvictRestartLearnsStoreAndRecency(t *testing.T) {
	// First run: a limit too large to evict, uses recorded on disk at once.
	env, _ := newEvictEnv(t, 1<<40, func(c *envConfig) { c.disk.TouchInterval = time.Nanosecond })
	bodies := map[int][]byte{}
	for i := 1; i <= 7; i++ {
		bodies[i] = env.publish(evictMV(i))
	}
	for i := 1; i <= 6; i++ {
		get(t, env.cache, evictMV(i), bodies[i])
	}
	// Archive i last used i hours before the 7th; then archive 1 used now.
	base := time.Now().Add(-24 * time.Hour)
	for i := 1; i <= 6; i++ {
		p := filepath.Join(env.root, filepath.FromSlash(evictMV(i).RelPath()))
		if err := os.Chtimes(p, base.Add(time.Duration(i)*time.Hour), base.Add(time.Duration(i)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	before := time.Now()
	get(t, env.cache, evictMV(1), bodies[1])
	fi, err := os.Stat(filepath.Join(env.root, filepath.FromSlash(evictMV(1).RelPath())))
	if err != nil {
		t.Fatal(err)
	}
	if fi.ModTime().Before(before.Add(-time.Second)) {
		t.Fatalf("use of archive 1 not recorded: mtime %v, used at %v", fi.ModTime(), before)
	}
	if st := env.cache.Stats(); st.StoreFiles != 6 || st.Evictions != 0 {
		t.Fatalf("first run: StoreFiles=%d Evictions=%d, want 6 and 0", st.StoreFiles, st.Evictions)
	}

	// Restart with room for three: the walk counts the six and evicts the
	// least recently used (2, 3, 4), keeping 1 because of its recorded use.
	c, logs := reopen(t, env, roomFor(3))
	if vs, _ := onDisk(t, env.root); !slices.Equal(vs, versions(1, 5, 6)) {
		t.Errorf("after restart: kept %v, want %v", vs, versions(1, 5, 6))
	}
	checkAccounting(t, c, env.root)
	if st := c.Stats(); st.Evictions != 3 {
		t.Errorf("after restart: Evictions=%d, want 3", st.Evictions)
	}
	if recs := logs.Records(t, "archive store scanned for the size limit"); len(recs) != 1 || recs[0]["archives"] != float64(6) || recs[0]["bytes"] != float64(6*evictSize()) {
		t.Errorf("scan log records %v, want one with 6 archives of %d bytes", recs, 6*evictSize())
	}
	// The limit still holds for what comes next: 5 is now the oldest.
	get(t, c, evictMV(7), bodies[7])
	if vs, _ := onDisk(t, env.root); !slices.Equal(vs, versions(1, 6, 7)) {
		t.Errorf("after fetching another: kept %v, want %v", vs, versions(1, 6, 7))
	}
	checkAccounting(t, c, env.root)
}

func TestEvictOversizeArchive(t *testing.T) {
	env, logs := newEvictEnv(t, roomFor(1))
	small := env.publish(evictMV(1))
	get(t, env.cache, evictMV(1), small)

	big := module.Version{Module: "evict/big", Version: "1.0.0"}
	body := bytes.Repeat([]byte("big archive\n"), int(3*evictSize())/12)
	env.up.mu.Lock()
	env.up.files["/user/"+big.RelPath()] = body
	env.up.mu.Unlock()
	env.index.set(big, storetest.Sum(body))

	obj, outcome, err := env.cache.Get(context.Background(), big)
	if err != nil || outcome != cache.OutcomeMiss {
		t.Fatalf("Get of an archive over the limit: %v, %s", err, outcome)
	}
	// Served in full; the small one is not flushed to make room for it.
	vs, _ := onDisk(t, env.root)
	if !slices.Contains(vs, big.Version) || !slices.Contains(vs, evictMV(1).Version) {
		t.Errorf("while serving the oversize archive: disk holds %v, want both", vs)
	}
	if got := readAll(t, obj); !bytes.Equal(got, body) {
		t.Fatalf("oversize archive: %d bytes served, want %d", len(got), len(body))
	}
	// Closed: it goes at once, the small one stays.
	if vs, _ := onDisk(t, env.root); !slices.Equal(vs, versions(1)) {
		t.Errorf("after serving the oversize archive: disk holds %v, want %v", vs, versions(1))
	}
	checkAccounting(t, env.cache, env.root)
	if st := env.cache.Stats(); st.Evictions != 1 {
		t.Errorf("Evictions=%d, want 1", st.Evictions)
	}
	if recs := logs.Records(t, "archive is larger than cache.max_size by itself: it is served, then evicted once nobody reads it"); len(recs) != 1 || recs[0]["archive"] != big.String() {
		t.Errorf("oversize warnings %v, want one for %s", recs, big)
	}
	// Asked again, it is fetched again and still served.
	if o := get(t, env.cache, big, body); o != cache.OutcomeMiss {
		t.Errorf("second Get of the oversize archive: %s, want miss", o)
	}
}

func TestEvictConcurrentGets(t *testing.T) {
	max := roomFor(3)
	env, _ := newEvictEnv(t, max)
	const n = 9
	bodies := map[int][]byte{}
	for i := 1; i <= n; i++ {
		bodies[i] = env.publish(evictMV(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 8*25)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range 25 {
				i := 1 + r.IntN(n)
				obj, _, err := env.cache.Get(ctx, evictMV(i))
				if err != nil {
					errs <- fmt.Errorf("Get %d: %w", i, err)
					continue
				}
				var b bytes.Buffer
				_, err = b.ReadFrom(obj)
				obj.Close()
				if err != nil || !bytes.Equal(b.Bytes(), bodies[i]) {
					errs <- fmt.Errorf("Get %d: %d bytes, %v", i, b.Len(), err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Everything closed: the last release ran any pass that pins held up.
	if vs, total := onDisk(t, env.root); total > max {
		t.Errorf("after concurrent use: %d bytes on disk (%v), limit %d", total, vs, max)
	}
	checkAccounting(t, env.cache, env.root)
	if pins := env.store.Usage().InUse; pins != 0 {
		t.Errorf("%d archives still pinned after every object was closed", pins)
	}
}

func TestEvictAccountingFollowsOtherRemovals(t *testing.T) {
	env, _ := newEvictEnv(t, roomFor(3))
	bodies := map[int][]byte{}
	for i := 1; i <= 4; i++ {
		bodies[i] = env.publish(evictMV(i))
	}
	get(t, env.cache, evictMV(1), bodies[1])
	get(t, env.cache, evictMV(2), bodies[2])
	// Removed behind the cache's back: eviction finds it gone, drops it
	// from the count and does not call that an eviction.
	if err := os.Remove(filepath.Join(env.root, filepath.FromSlash(evictMV(1).RelPath()))); err != nil {
		t.Fatal(err)
	}
	get(t, env.cache, evictMV(3), bodies[3])
	get(t, env.cache, evictMV(4), bodies[4])
	if vs, _ := onDisk(t, env.root); !slices.Equal(vs, versions(2, 3, 4)) {
		t.Errorf("kept %v, want %v", vs, versions(2, 3, 4))
	}
	checkAccounting(t, env.cache, env.root)
	if st := env.cache.Stats(); st.Evictions != 0 {
		t.Errorf("Evictions=%d, want 0 (the only one dropped was already gone)", st.Evictions)
	}
	// verify --purge deletes through the cache: counted too.
	p := filepath.Join(env.root, filepath.FromSlash(evictMV(2).RelPath()))
	if err := os.WriteFile(p, []byte("corrupt"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := env.cache.Verify(context.Background(), nil, true)
	if err != nil || len(res.Problems) != 1 || !res.Problems[0].Purged {
		t.Fatalf("Verify: %+v, %v", res, err)
	}
	checkAccounting(t, env.cache, env.root)
}

// BenchmarkEvictGetHit measures what the size limit adds to a hit (pin,
// recency update, wrapped Object): Get, read, Close of a cached archive.
func BenchmarkEvictGetHit(b *testing.B) {
	for _, bc := range []struct {
		name     string
		maxBytes int64
	}{{"unlimited", 0}, {"limited", 1 << 40}} {
		b.Run(bc.name, func(b *testing.B) {
			mv := evictMV(1)
			body := storetest.Body(mv)
			ctx := context.Background()
			index := newFakeIndex()
			index.set(mv, storetest.Sum(body))
			c, s := openCache(b, envConfig{
				cache:   cache.Options{Index: index, Logger: zerolog.Nop()},
				disk:    disk.Options{Root: b.TempDir(), MaxBytes: bc.maxBytes, Logger: zerolog.Nop()},
				offline: true,
			})
			if _, err := store.PutVerified(ctx, s, mv, bytes.NewReader(body), store.Meta{SHA256: storetest.Sum(body), Size: -1}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]byte, 32<<10)
				for pb.Next() {
					obj, _, err := c.Get(ctx, mv)
					if err != nil {
						b.Error(err)
						return
					}
					obj.Read(buf)
					obj.Close()
				}
			})
		})
	}
}
