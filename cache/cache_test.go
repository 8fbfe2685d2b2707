package cache_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"moonbit-registry/cache"
	"moonbit-registry/module"
	"moonbit-registry/store"
	"moonbit-registry/store/disk"
	"moonbit-registry/store/storetest"
	"moonbit-registry/upstream"
)

var (
	lexRuntime = module.Version{Module: "moonbitlang/lex/runtime", Version: "0.1.0"}
	camel      = module.Version{Module: "illusory0x0/🐫", Version: "0.1.2+3"}
)

func TestGetMissThenHit(t *testing.T) {
	for _, mv := range []module.Version{lexRuntime, camel} {
		t.Run(mv.String(), func(t *testing.T) {
			env := newTestEnv(t, nil)
			want := env.publish(mv)

			obj, outcome, err := env.cache.Get(context.Background(), mv)
			if err != nil {
				t.Fatal(err)
			}
			if outcome != cache.OutcomeMiss {
				t.Errorf("first Get outcome = %q, want miss", outcome)
			}
			if got := readAll(t, obj); !bytes.Equal(got, want) {
				t.Fatalf("first Get: %d bytes, want %d", len(got), len(want))
			}
			if _, ok := obj.(syscall.Conn); !ok {
				t.Errorf("local store object is %T, which does not expose the descriptor for sendfile", obj)
			}

			obj, outcome, err = env.cache.Get(context.Background(), mv)
			if err != nil {
				t.Fatal(err)
			}
			if outcome != cache.OutcomeHit {
				t.Errorf("second Get outcome = %q, want hit", outcome)
			}
			if got := readAll(t, obj); !bytes.Equal(got, want) {
				t.Fatal("second Get: wrong bytes")
			}

			st := env.cache.Stats()
			if st.Fetches != 1 || st.UpstreamRequests != 1 || st.Hits != 1 || st.BytesFetched != int64(len(want)) {
				t.Errorf("stats = %+v", st)
			}
			// Human-readable layout.
			onDisk, err := os.ReadFile(filepath.Join(env.root, filepath.FromSlash(mv.RelPath())))
			if err != nil || !bytes.Equal(onDisk, want) {
				t.Errorf("archive not at <root>/%s: %v", mv.RelPath(), err)
			}
			if tmp := tempFiles(t, env.root); len(tmp) != 0 {
				t.Errorf("temporary files left: %v", tmp)
			}
			env.up.mu.Lock()
			defer env.up.mu.Unlock()
			if ua := env.up.ua[0]; !strings.HasPrefix(ua, "mooncake/") {
				t.Errorf("User-Agent = %q", ua)
			}
		})
	}
}

func TestArchiveURLEscaping(t *testing.T) {
	env := newTestEnv(t, nil)
	env.publish(camel)
	if _, err := env.cache.Ensure(context.Background(), camel); err != nil {
		t.Fatal(err)
	}
	env.up.mu.Lock()
	defer env.up.mu.Unlock()
	if want := "/user/illusory0x0/%F0%9F%90%AB/0.1.2%2B3.zip"; env.up.escaped[0] != want {
		t.Errorf("upstream path = %q, want %q", env.up.escaped[0], want)
	}
}

func TestGetFailures(t *testing.T) {
	tests := []struct {
		name     string
		faults   []fault
		retries  int
		publish  bool
		wantErr  error
		requests int64
	}{
		{name: "404 not retried", faults: nil, publish: false, wantErr: cache.ErrNotFound, requests: 1},
		{name: "410 not retried", faults: []fault{status(410)}, publish: true, wantErr: cache.ErrNotFound, requests: 1},
		{name: "checksum mismatch not retried", faults: []fault{wrongBytes}, publish: true, wantErr: store.ErrChecksumMismatch, requests: 1},
		{name: "403 not retried", faults: []fault{status(403)}, publish: true, wantErr: cache.ErrUpstream, requests: 1},
		{name: "5xx until retries run out", faults: []fault{status(500), status(502), status(503)}, retries: 2, publish: true, wantErr: cache.ErrUpstream, requests: 3},
		{name: "truncated until retries run out", faults: []fault{cutBody(false), cutBody(false)}, retries: 1, publish: true, wantErr: cache.ErrUpstream, requests: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t, func(c *envConfig) { c.fetch.Retries = tt.retries })
			mv := lexRuntime
			if tt.publish {
				env.publish(mv)
			} else {
				// Known to the index, but upstream lost it.
				env.index.set(mv, storetest.Sum(storetest.Body(mv)))
			}
			env.up.queue(tt.faults...)

			obj, _, err := env.cache.Get(context.Background(), mv)
			if err == nil {
				obj.Close()
				t.Fatal("Get succeeded, want error")
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == cache.ErrNotFound {
				// upstream's own not-found, under every name, reading as it
				// always has.
				if !errors.Is(err, cache.ErrUpstreamNotFound) || !errors.Is(err, upstream.ErrNotFound) ||
					!strings.Contains(err.Error(), "archive not found: upstream has no such archive: "+mv.String()) {
					t.Errorf("err = %v, want ErrUpstreamNotFound and upstream.ErrNotFound", err)
				}
			}
			if n := env.up.requests.Load(); n != tt.requests {
				t.Errorf("upstream requests = %d, want %d", n, tt.requests)
			}
			if _, err := env.store.Open(context.Background(), mv); !errors.Is(err, store.ErrNotExist) {
				t.Errorf("store after failure: %v, want ErrNotExist", err)
			}
			if tmp := tempFiles(t, env.root); len(tmp) != 0 {
				t.Errorf("temporary files left: %v", tmp)
			}
			if tt.wantErr == store.ErrChecksumMismatch {
				var ce *store.ChecksumError
				if !errors.As(err, &ce) || ce.Expected == ce.Actual || ce.Expected == "" || ce.Actual == "" {
					t.Errorf("checksum error lacks both sums: %#v", ce)
				}
			}
			if st := env.cache.Stats(); st.FetchFailures != 1 {
				t.Errorf("stats = %+v, want one failure", st)
			}
		})
	}
}

func TestGetRetriesTransientFailures(t *testing.T) {
	tests := []struct {
		name   string
		faults []fault
	}{
		{"503", []fault{status(503)}},
		{"500 then 502", []fault{status(500), status(502)}},
		{"408", []fault{status(408)}},
		{"429", []fault{status(429)}},
		{"reset mid-body", []fault{cutBody(true)}},
		{"truncated body", []fault{cutBody(false)}},
		{"hang", []fault{hang}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t, func(c *envConfig) { c.fetch.Timeout = 500 * time.Millisecond })
			want := env.publish(lexRuntime)
			env.up.queue(tt.faults...)

			obj, outcome, err := env.cache.Get(context.Background(), lexRuntime)
			if err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, obj); !bytes.Equal(got, want) || outcome != cache.OutcomeMiss {
				t.Fatalf("got %d bytes (%s), want %d", len(got), outcome, len(want))
			}
			if n, want := env.up.requests.Load(), int64(len(tt.faults)+1); n != want {
				t.Errorf("upstream requests = %d, want %d", n, want)
			}
			if tmp := tempFiles(t, env.root); len(tmp) != 0 {
				t.Errorf("temporary files left: %v", tmp)
			}
		})
	}
}

func TestConcurrentGetsShareOneFetch(t *testing.T) {
	env := newTestEnv(t, nil)
	want := env.publish(lexRuntime)
	gate := make(chan struct{})
	env.up.gate = gate

	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			obj, _, err := env.cache.Get(context.Background(), lexRuntime)
			if err != nil {
				errs <- err
				return
			}
			defer obj.Close()
			var b bytes.Buffer
			if _, err := b.ReadFrom(obj); err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(b.Bytes(), want) {
				errs <- errors.New("wrong bytes")
			}
		}()
	}
	// Hold the one upstream request open while the others pile up behind
	// it. Whether a late goroutine joins the flight or finds the stored
	// archive, it must not cause a second request.
	<-env.up.arrived
	time.Sleep(100 * time.Millisecond)
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := env.up.requests.Load(); got != 1 {
		t.Errorf("upstream requests = %d, want exactly 1", got)
	}
	st := env.cache.Stats()
	if st.Fetches != 1 {
		t.Errorf("fetches = %d, want 1", st.Fetches)
	}
	// Every request either waited for the one fetch or, arriving late, hit.
	if st.Coalesced+st.Hits != n-1 || st.Coalesced == 0 || st.InFlight != 0 {
		t.Errorf("coalesced %d + hits %d, in flight %d; want %d waiters or hits, none in flight", st.Coalesced, st.Hits, st.InFlight, n-1)
	}
}

func TestCancelledWaiterDoesNotCancelFetch(t *testing.T) {
	env := newTestEnv(t, nil)
	want := env.publish(lexRuntime)
	gate := make(chan struct{})
	env.up.gate = gate

	quitter, quit := context.WithCancel(context.Background())
	quitterDone := make(chan error, 1)
	go func() {
		_, _, err := env.cache.Get(quitter, lexRuntime)
		quitterDone <- err
	}()
	<-env.up.arrived

	type result struct {
		b   []byte
		err error
	}
	patient := make(chan result, 1)
	go func() {
		obj, _, err := env.cache.Get(context.Background(), lexRuntime)
		if err != nil {
			patient <- result{err: err}
			return
		}
		defer obj.Close()
		var b bytes.Buffer
		_, err = b.ReadFrom(obj)
		patient <- result{b: b.Bytes(), err: err}
	}()
	time.Sleep(50 * time.Millisecond) // let the patient waiter join the flight

	quit()
	select {
	case err := <-quitterDone:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled waiter err = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled waiter still waiting")
	}

	close(gate)
	select {
	case r := <-patient:
		if r.err != nil || !bytes.Equal(r.b, want) {
			t.Fatalf("patient waiter: %d bytes, err %v", len(r.b), r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("patient waiter never got the archive")
	}
	if got := env.up.requests.Load(); got != 1 {
		t.Errorf("upstream requests = %d, want 1", got)
	}
}

func TestFetchOutlivesAllWaiters(t *testing.T) {
	env := newTestEnv(t, nil)
	env.publish(lexRuntime)
	gate := make(chan struct{})
	env.up.gate = gate

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := env.cache.Ensure(ctx, lexRuntime)
		done <- err
	}()
	<-env.up.arrived
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	close(gate)
	// The detached fetch finishes and stores the archive on its own.
	for i := 0; ; i++ {
		obj, err := env.store.Open(context.Background(), lexRuntime)
		if err == nil {
			obj.Close()
			break
		}
		if i == 200 {
			t.Fatal("archive never stored after the only waiter left")
		}
		time.Sleep(25 * time.Millisecond)
	}
	if outcome, err := env.cache.Ensure(context.Background(), lexRuntime); err != nil || outcome != cache.OutcomeHit {
		t.Errorf("Ensure after = %q, %v; want hit", outcome, err)
	}
}

func TestOffline(t *testing.T) {
	env := newTestEnv(t, func(c *envConfig) { c.offline = true })
	env.publish(lexRuntime)

	_, _, err := env.cache.Get(context.Background(), lexRuntime)
	if !errors.Is(err, cache.ErrUpstreamUnavailable) {
		t.Errorf("offline miss: %v, want ErrUpstreamUnavailable", err)
	}
	unknown := module.Version{Module: "nobody/nothing", Version: "1.0.0"}
	if _, _, err := env.cache.Get(context.Background(), unknown); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("offline unknown: %v, want ErrNotFound", err)
	}
	if n := env.up.requests.Load(); n != 0 {
		t.Errorf("offline cache made %d upstream requests", n)
	}

	// What is already stored is still served.
	put(t, env.store, lexRuntime, storetest.Body(lexRuntime))
	obj, outcome, err := env.cache.Get(context.Background(), lexRuntime)
	if err != nil || outcome != cache.OutcomeHit {
		t.Fatalf("offline hit: %q, %v", outcome, err)
	}
	obj.Close()
}

func TestUpstreamDown(t *testing.T) {
	env := newTestEnv(t, func(c *envConfig) { c.fetch.Retries = 1 })
	env.publish(lexRuntime)
	env.up.srv.Close()

	_, _, err := env.cache.Get(context.Background(), lexRuntime)
	if !errors.Is(err, cache.ErrUpstreamUnavailable) {
		t.Fatalf("err = %v, want ErrUpstreamUnavailable", err)
	}
	if st := env.cache.Stats(); st.UpstreamRequests != 2 {
		t.Errorf("attempts = %d, want 2 (one retry)", st.UpstreamRequests)
	}
}

func TestUnknownVersionRefreshesIndexOnce(t *testing.T) {
	t.Run("published after the last sync", func(t *testing.T) {
		env := newTestEnv(t, nil)
		want := env.up.add(lexRuntime)
		env.index.onRefresh = func(f *fakeIndex) { f.set(lexRuntime, storetest.Sum(want)) }

		obj, _, err := env.cache.Get(context.Background(), lexRuntime)
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, obj); !bytes.Equal(got, want) {
			t.Error("wrong bytes")
		}
		if n := env.index.refreshes.Load(); n != 1 {
			t.Errorf("refreshes = %d, want 1", n)
		}
	})
	t.Run("unknown while the refresh fails", func(t *testing.T) {
		env := newTestEnv(t, nil)
		env.index.refresh = errors.New("git fetch: connection refused")
		_, _, err := env.cache.Get(context.Background(), lexRuntime)
		if !errors.Is(err, module.ErrIndexUnavailable) || errors.Is(err, cache.ErrNotFound) || !strings.Contains(err.Error(), "up to date failed") {
			t.Fatalf("err = %v, want ErrIndexUnavailable saying the refresh failed, not ErrNotFound", err)
		}
		if n := env.up.requests.Load(); n != 0 {
			t.Errorf("upstream requests = %d, want 0", n)
		}
	})
	t.Run("does not exist", func(t *testing.T) {
		env := newTestEnv(t, nil)
		_, _, err := env.cache.Get(context.Background(), lexRuntime)
		if !errors.Is(err, cache.ErrNotFound) || !strings.Contains(err.Error(), "not in the index") {
			t.Fatalf("err = %v, want ErrNotFound saying it is not in the index", err)
		}
		if n := env.index.refreshes.Load(); n != 1 {
			t.Errorf("refreshes = %d, want 1", n)
		}
		if n := env.up.requests.Load(); n != 0 {
			t.Errorf("upstream requests = %d, want 0", n)
		}
	})
}

func TestTooLarge(t *testing.T) {
	env := newTestEnv(t, func(c *envConfig) { c.fetch.MaxArchiveBytes = 1000 })
	env.publish(lexRuntime)
	_, _, err := env.cache.Get(context.Background(), lexRuntime)
	if !errors.Is(err, cache.ErrUpstream) {
		t.Fatalf("err = %v, want ErrUpstream", err)
	}
	if n := env.up.requests.Load(); n != 1 {
		t.Errorf("upstream requests = %d, want 1 (no retry)", n)
	}
}

func TestGetRejectsBadNames(t *testing.T) {
	env := newTestEnv(t, nil)
	for _, mv := range []module.Version{
		{Module: "../etc", Version: "1.0.0"},
		{Module: "a/b", Version: "../../x"},
		{Module: ".tmp/x", Version: "1.0.0"},
	} {
		if _, _, err := env.cache.Get(context.Background(), mv); !errors.Is(err, module.ErrBadName) {
			t.Errorf("Get(%+v) = %v, want module.ErrBadName", mv, err)
		}
	}
	if n := env.up.requests.Load(); n != 0 {
		t.Errorf("upstream requests = %d, want 0", n)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	s, err := disk.New(disk.Options{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for name, opts := range map[string]cache.Options{
		"no store": {Index: newFakeIndex()},
		"no index": {Store: s},
	} {
		if _, err := cache.New(opts); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	if _, err := upstream.NewFetcher(upstream.FetcherOptions{DownloadURL: "download.mooncakes.io"}); err == nil {
		t.Error("NewFetcher accepted a relative download URL")
	}
	f, err := upstream.NewFetcher(upstream.FetcherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.ArchiveURL(camel); got != "https://download.mooncakes.io/user/illusory0x0/%F0%9F%90%AB/0.1.2%2B3.zip" {
		t.Errorf("ArchiveURL = %q", got)
	}
}

// rerelease makes upstream serve new bytes for mv and the index list their
// checksum, as when a version is published again.
func (e *testEnv) rerelease(mv module.Version, body []byte) {
	e.up.mu.Lock()
	e.up.files["/user/"+mv.RelPath()] = body
	e.up.mu.Unlock()
	e.index.set(mv, storetest.Sum(body))
}

func TestStaleArchiveIsFetchedAgain(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, nil)
	old := env.publish(lexRuntime)
	get(t, env.cache, lexRuntime, old)
	newer := append([]byte("re-released "), old...)
	env.rerelease(lexRuntime, newer)

	// The stored bytes are not the ones the index lists now: a miss that
	// replaces them, never the old bytes under the new checksum.
	if o := get(t, env.cache, lexRuntime, newer); o != cache.OutcomeMiss {
		t.Errorf("first Get after the re-release: %s, want miss", o)
	}
	obj, err := env.store.Open(ctx, lexRuntime)
	if err != nil {
		t.Fatal(err)
	}
	if sum := obj.Info().SHA256; sum != storetest.Sum(newer) {
		t.Errorf("stored checksum %s, want the new one", sum)
	}
	obj.Close()
	if o := get(t, env.cache, lexRuntime, newer); o != cache.OutcomeHit {
		t.Errorf("second Get: %s, want hit", o)
	}
	// Ensure (mirror) replaces a stale archive too.
	newest := append([]byte("again "), newer...)
	env.rerelease(lexRuntime, newest)
	if o, err := env.cache.Ensure(ctx, lexRuntime); err != nil || o != cache.OutcomeMiss {
		t.Errorf("Ensure after another re-release: %s, %v; want miss", o, err)
	}
	get(t, env.cache, lexRuntime, newest)
	if n := env.up.requests.Load(); n != 3 {
		t.Errorf("upstream requests = %d, want 3 (one per release)", n)
	}
}

// A download that began before the index changed the checksum stores bytes
// that are already stale: they are not served, the new ones are.
func TestChecksumChangeDuringDownload(t *testing.T) {
	env := newTestEnv(t, nil)
	env.publish(lexRuntime)
	gate := make(chan struct{})
	env.up.gate = gate
	type result struct {
		b   []byte
		o   cache.Outcome
		err error
	}
	done := make(chan result, 1)
	go func() {
		obj, o, err := env.cache.Get(context.Background(), lexRuntime)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer obj.Close()
		b, err := io.ReadAll(obj)
		done <- result{b, o, err}
	}()
	<-env.up.arrived // the download has begun with the old checksum
	newer := append([]byte("re-released "), storetest.Body(lexRuntime)...)
	env.index.set(lexRuntime, storetest.Sum(newer))
	// The first request has taken the old bytes already (they match the
	// checksum the fetch began with); the next one gets the new bytes, at
	// once.
	env.up.mu.Lock()
	env.up.files["/user/"+lexRuntime.RelPath()] = newer
	env.up.gate = nil
	env.up.mu.Unlock()
	close(gate)
	select {
	case r := <-done:
		if r.err != nil || !bytes.Equal(r.b, newer) || r.o != cache.OutcomeMiss {
			t.Fatalf("Get: %d bytes, %s, %v; want the re-released bytes", len(r.b), r.o, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Get did not return")
	}
	if n := env.up.requests.Load(); n != 2 {
		t.Errorf("upstream requests = %d, want 2", n)
	}
}
