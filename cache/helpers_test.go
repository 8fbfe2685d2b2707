package cache_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"moonbit-registry/cache"
	"moonbit-registry/module"
	"moonbit-registry/store"
	"moonbit-registry/store/disk"
	"moonbit-registry/store/storetest"
	"moonbit-registry/upstream"

	"github.com/rs/zerolog"
)

// fakeIndex is a map of module@version -> checksum. onRefresh, if set, runs
// on RequestRefresh (e.g. to "publish" a version).
type fakeIndex struct {
	mu        sync.Mutex
	sums      map[string]string
	broken    map[string]error // lookups that fail, as a malformed line does
	refresh   error            // what RequestRefresh returns
	refreshes atomic.Int64
	onRefresh func(f *fakeIndex)
}

func newFakeIndex() *fakeIndex { return &fakeIndex{sums: map[string]string{}} }

func (f *fakeIndex) set(mv module.Version, sum string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sums[mv.String()] = sum
}

func (f *fakeIndex) Checksum(ctx context.Context, module, version string) (string, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.broken[module+"@"+version]; err != nil {
		return "", false, err
	}
	s, ok := f.sums[module+"@"+version]
	return s, ok, nil
}

func (f *fakeIndex) RequestRefresh(ctx context.Context) error {
	f.refreshes.Add(1)
	if f.onRefresh != nil {
		f.onRefresh(f)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refresh
}

// fault handles one upstream request instead of the normal handler.
type fault func(w http.ResponseWriter, r *http.Request, body []byte)

func status(code int) fault {
	return func(w http.ResponseWriter, r *http.Request, body []byte) {
		http.Error(w, http.StatusText(code), code)
	}
}

// cutBody sends headers announcing the whole body, half the body, then
// closes the connection: with a reset (RST) or cleanly (truncation).
func cutBody(reset bool) fault {
	return func(w http.ResponseWriter, r *http.Request, body []byte) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			http.Error(w, "cannot hijack: "+err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: application/zip\r\n\r\n", len(body))
		buf.Write(body[:len(body)/2])
		buf.Flush()
		if tc, ok := conn.(*net.TCPConn); ok && reset {
			tc.SetLinger(0)
		}
		conn.Close()
	}
}

func wrongBytes(w http.ResponseWriter, r *http.Request, body []byte) {
	w.Write(append([]byte("tampered"), body[8:]...))
}

// hang answers nothing until the client gives up.
func hang(w http.ResponseWriter, r *http.Request, body []byte) {
	<-r.Context().Done()
}

// fakeUpstream serves archives at /user/<owner>/<rest>/<version>.zip, with
// queued faults applied to the next requests in order.
type fakeUpstream struct {
	srv      *httptest.Server
	mu       sync.Mutex
	files    map[string][]byte // by decoded request path
	faults   []fault
	gate     chan struct{} // if set, requests wait for it to close
	arrived  chan struct{} // receives (non-blocking) when a request arrives
	requests atomic.Int64
	ua       []string
	escaped  []string
}

func newFakeUpstream(t *testing.T) *fakeUpstream {
	u := &fakeUpstream{files: map[string][]byte{}, arrived: make(chan struct{}, 1000)}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *fakeUpstream) add(mv module.Version) []byte {
	b := storetest.Body(mv)
	u.mu.Lock()
	defer u.mu.Unlock()
	u.files["/user/"+mv.RelPath()] = b
	return b
}

func (u *fakeUpstream) queue(f ...fault) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.faults = append(u.faults, f...)
}

func (u *fakeUpstream) serve(w http.ResponseWriter, r *http.Request) {
	u.requests.Add(1)
	u.mu.Lock()
	u.ua = append(u.ua, r.UserAgent())
	u.escaped = append(u.escaped, r.URL.EscapedPath())
	var f fault
	if len(u.faults) > 0 {
		f, u.faults = u.faults[0], u.faults[1:]
	}
	body, ok := u.files[r.URL.Path]
	gate := u.gate
	u.mu.Unlock()
	select {
	case u.arrived <- struct{}{}:
	default:
	}
	if gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	}
	if f != nil {
		f(w, r, body)
		return
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

// testEnv is a cache over a real disk store in a temp dir and a fake
// upstream reached over HTTP by the real fetcher.
type testEnv struct {
	cache *cache.Cache
	store *disk.Store
	index *fakeIndex
	up    *fakeUpstream
	root  string
}

// envConfig is what a test may change before the env is built.
type envConfig struct {
	cache   cache.Options
	fetch   upstream.FetcherOptions
	disk    disk.Options
	offline bool // no fetcher at all
	// wrap, if set, is what the cache gets instead of the disk store.
	wrap func(*disk.Store) store.Store
}

func newTestEnv(t *testing.T, tweak func(*envConfig)) *testEnv {
	t.Helper()
	env := &testEnv{index: newFakeIndex(), up: newFakeUpstream(t), root: filepath.Join(t.TempDir(), "packages")}
	cfg := envConfig{
		cache: cache.Options{Index: env.index, FetchTimeout: 30 * time.Second, Logger: zerolog.Nop()},
		fetch: upstream.FetcherOptions{
			DownloadURL:  env.up.srv.URL,
			Timeout:      5 * time.Second,
			RetryBackoff: time.Millisecond,
			Logger:       zerolog.Nop(),
		},
		disk: disk.Options{Root: env.root, Logger: zerolog.Nop()},
	}
	if tweak != nil {
		tweak(&cfg)
	}
	env.cache, env.store = openCache(t, cfg)
	return env
}

// openCache builds the store, the fetcher and the cache of cfg; what a
// restart does.
func openCache(t testing.TB, cfg envConfig) (*cache.Cache, *disk.Store) {
	t.Helper()
	s, err := disk.New(cfg.disk)
	if err != nil {
		t.Fatal(err)
	}
	cfg.cache.Store = s
	if cfg.wrap != nil {
		cfg.cache.Store = cfg.wrap(s)
	}
	if !cfg.offline {
		f, err := upstream.NewFetcher(cfg.fetch)
		if err != nil {
			t.Fatal(err)
		}
		cfg.cache.Fetcher = f
	}
	c, err := cache.New(cfg.cache)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.ScanDone():
	case <-time.After(30 * time.Second):
		t.Fatal("start-up walk of the store did not finish within 30s")
	}
	return c, s
}

// put stores b as mv's archive directly, as an earlier run would have.
func put(t *testing.T, s store.Store, mv module.Version, b []byte) {
	t.Helper()
	if _, err := store.PutVerified(context.Background(), s, mv, bytes.NewReader(b), store.Meta{SHA256: storetest.Sum(b), Size: -1}); err != nil {
		t.Fatal(err)
	}
}

// publish makes mv known to the index and served by upstream.
func (e *testEnv) publish(mv module.Version) []byte {
	b := e.up.add(mv)
	e.index.set(mv, storetest.Sum(b))
	return b
}

func readAll(t *testing.T, obj store.Object) []byte {
	t.Helper()
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tempFiles lists what is left in the store's temporary directory.
func tempFiles(t *testing.T, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, ".tmp"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
