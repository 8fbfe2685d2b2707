package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"moonbit-registry/store/disk"
	"moonbit-registry/upstream"

	"github.com/rs/zerolog"
)

// ptUpstream plays both upstream hosts: the download host (/symbols.zip)
// and the API host (/assets/..., /api/v0/...).
type ptUpstream struct {
	srv      *httptest.Server
	mu       sync.Mutex
	symbols  int // version of symbols.zip
	requests atomic.Int64
	lastUA   atomic.Value
	lastINM  atomic.Value
	lastURI  atomic.Value
	paths    sync.Map // path -> *atomic.Int64, requests per path
}

// count is how many requests upstream had for path.
func (u *ptUpstream) count(path string) int64 {
	if n, ok := u.paths.Load(path); ok {
		return n.(*atomic.Int64).Load()
	}
	return 0
}

func newPTUpstream(t *testing.T) *ptUpstream {
	u := &ptUpstream{symbols: 1}
	mux := http.NewServeMux()
	mux.HandleFunc("/symbols.zip", func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		v := u.symbols
		u.mu.Unlock()
		etag := fmt.Sprintf(`"sym-%d"`, v)
		w.Header().Set("ETag", etag)
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("Set-Cookie", "session=secret")
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "1")
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/zip")
		fmt.Fprintf(w, "symbols v%d", v)
	})
	mux.HandleFunc("/assets/", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/assets/moonbitlang/x@0.4.1/core.wasm":
			w.Header().Set("Cache-Control", "max-age=3600")
			w.Write([]byte("\x00asm wasm bytes"))
		case "/assets/moonbitlang/x@0.4.1/core.wasm.sha256":
			w.Write([]byte(strings.Repeat("ab", 32) + "  core.wasm\n"))
		case "/assets/slow/missing.wasm":
			time.Sleep(50 * time.Millisecond) // long enough for requests to pile up
			http.NotFound(w, r)
		default:
			http.NotFound(w, r)
		}
	})
	mux.HandleFunc("/future/", func(w http.ResponseWriter, r *http.Request) {
		// A download path no client asked for when this was written.
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("ETag", `"future-1"`)
		if r.Header.Get("If-None-Match") == `"future-1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Write([]byte("future artifact " + r.URL.Path))
	})
	mux.HandleFunc("/api/v0/broken", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream bug", http.StatusInternalServerError)
	})
	mux.HandleFunc("/api/v0/", func(w http.ResponseWriter, r *http.Request) {
		if f := r.URL.Query().Get("fail"); f != "" {
			code, err := strconv.Atoi(f)
			if err != nil || code < 500 {
				code = http.StatusInternalServerError
			}
			http.Error(w, "upstream bug", code)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"path":%q,"kw":%q}`, r.URL.Path, r.URL.Query().Get("kw"))
	})
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.requests.Add(1)
		n, _ := u.paths.LoadOrStore(r.URL.Path, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		u.lastUA.Store(r.UserAgent())
		u.lastINM.Store(r.Header.Get("If-None-Match"))
		u.lastURI.Store(r.RequestURI)
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

type ptFixture struct {
	up  *ptUpstream
	srv *httptest.Server
	log *logBuffer
	pt  *passthrough // the handler under test
}

func newPTFixture(t *testing.T) *ptFixture { return newPTFixtureWith(t, nil) }

// newPTFixtureWith lets the test change the options first.
func newPTFixtureWith(t *testing.T, tweak func(*PassthroughOptions)) *ptFixture {
	t.Helper()
	up := newPTUpstream(t)
	responses, err := disk.NewResponseCache(filepath.Join(t.TempDir(), "http-cache"), false, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	rt := upstream.NewCachingTransport(responses, nil)
	bodies, err := disk.NewBodies(filepath.Join(t.TempDir(), "bodies"), false, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	opts := PassthroughOptions{
		DownloadURL: up.srv.URL,
		APIURL:      up.srv.URL + "/",
		Transport:   rt,
		Bodies:      bodies,
		Logger:      zerolog.Nop(),
	}
	if tweak != nil {
		tweak(&opts)
	}
	h, err := NewPassthrough(opts)
	if err != nil {
		t.Fatal(err)
	}
	log := &logBuffer{}
	srv := httptest.NewServer(New(Options{Passthrough: h, Logger: zerolog.New(log)}).Handler())
	t.Cleanup(srv.Close)
	return &ptFixture{up: up, srv: srv, log: log, pt: h.(*passthrough)}
}

func TestPassthroughSymbolsRevalidationAndStale(t *testing.T) {
	// Not parallel: it closes its upstream and expects no answer, which a
	// parallel test's server taking the freed port would give.
	f := newPTFixture(t)
	u := f.srv.URL + "/symbols.zip"
	steps := []struct {
		name       string
		before     func()
		inm        string
		wantStatus int
		wantBody   string
		wantETag   string
		wantCache  string
	}{
		{name: "first fetch", wantStatus: 200, wantBody: "symbols v1", wantETag: `"sym-1"`, wantCache: "miss"},
		{name: "client copy current", inm: `"sym-1"`, wantStatus: 304, wantETag: `"sym-1"`, wantCache: "hit"},
		{name: "no condition, revalidated", wantStatus: 200, wantBody: "symbols v1", wantETag: `"sym-1"`, wantCache: "hit"},
		{name: "upstream has v2", before: func() { f.up.mu.Lock(); f.up.symbols = 2; f.up.mu.Unlock() },
			inm: `"sym-1"`, wantStatus: 200, wantBody: "symbols v2", wantETag: `"sym-2"`, wantCache: "miss"},
		{name: "upstream down: stored copy", before: f.up.srv.Close, wantStatus: 200, wantBody: "symbols v2", wantETag: `"sym-2"`, wantCache: "stale"},
		{name: "upstream down: client copy current", inm: `W/"sym-2"`, wantStatus: 304, wantETag: `"sym-2"`, wantCache: "stale"},
	}
	for i, s := range steps {
		if s.before != nil {
			s.before()
		}
		hdr := map[string]string{}
		if s.inm != "" {
			hdr["If-None-Match"] = s.inm
		}
		resp, body := do(t, http.MethodGet, u, hdr)
		if resp.StatusCode != s.wantStatus || string(body) != s.wantBody || resp.Header.Get("ETag") != s.wantETag {
			t.Fatalf("%s: %d %q ETag %s; want %d %q ETag %s", s.name, resp.StatusCode, body,
				resp.Header.Get("ETag"), s.wantStatus, s.wantBody, s.wantETag)
		}
		if outcomes := f.log.waitOutcomes(t, "/symbols.zip", i+1); len(outcomes) != i+1 || outcomes[i] != s.wantCache {
			t.Errorf("%s: cache outcomes %q, want #%d to be %q", s.name, outcomes, i, s.wantCache)
		}
		for _, k := range []string{"Set-Cookie", "X-Hop", "X-From-Cache"} {
			if v := resp.Header.Get(k); v != "" {
				t.Errorf("%s: header %s: %q passed on", s.name, k, v)
			}
		}
	}
	if ua, _ := f.up.lastUA.Load().(string); !strings.HasPrefix(ua, "mooncake/") {
		t.Errorf("upstream User-Agent %q", ua)
	}
}

// A client's If-None-Match on a cold cache still fills the cache: the next
// plain request is served while upstream is down.
func TestPassthroughConditionalFillsCache(t *testing.T) {
	// Not parallel: it closes its upstream and expects no answer, which a
	// parallel test's server taking the freed port would give.
	f := newPTFixture(t)
	u := f.srv.URL + "/symbols.zip"
	resp, _ := do(t, http.MethodGet, u, map[string]string{"If-None-Match": `"sym-1"`})
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("status %d, want 304", resp.StatusCode)
	}
	if inm, _ := f.up.lastINM.Load().(string); inm != "" {
		t.Errorf("client's If-None-Match %q sent upstream on a cold cache", inm)
	}
	f.up.srv.Close()
	resp, body := do(t, http.MethodGet, u, nil)
	if resp.StatusCode != 200 || string(body) != "symbols v1" {
		t.Errorf("after upstream went down: %d %q", resp.StatusCode, body)
	}
}

func TestPassthroughAssetsAndAPI(t *testing.T) {
	t.Parallel()
	f := newPTFixture(t)
	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
		wantBody   string
		wantURI    string // as upstream received it; "" = upstream not asked
	}{
		{"wasm", "GET", "/assets/moonbitlang/x@0.4.1/core.wasm", 200, "\x00asm wasm bytes", "/assets/moonbitlang/x@0.4.1/core.wasm"},
		{"wasm checksum", "GET", "/assets/moonbitlang/x@0.4.1/core.wasm.sha256", 200, strings.Repeat("ab", 32) + "  core.wasm\n", "/assets/moonbitlang/x@0.4.1/core.wasm.sha256"},
		{"no prebuilt asset", "GET", "/assets/moonbitlang/y@1.0.0/core.wasm", 404, "404 page not found\n", "/assets/moonbitlang/y@1.0.0/core.wasm"},
		{"head", "HEAD", "/assets/moonbitlang/x@0.4.1/core.wasm.sha256", 200, "", ""},
		{"search", "GET", "/api/v0/search?kw=json&limit=5", 200, `{"path":"/api/v0/search","kw":"json"}`, "/api/v0/search?kw=json&limit=5"},
		{"query dropped for assets", "GET", "/assets/moonbitlang/x@0.4.1/core.wasm?junk=1", 200, "\x00asm wasm bytes", ""},
		{"post", "POST", "/api/v0/search?kw=x", 405, "method not allowed\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.up.lastURI.Store("")
			resp, body := do(t, tt.method, f.srv.URL+tt.path, nil)
			if resp.StatusCode != tt.wantStatus || string(body) != tt.wantBody {
				t.Fatalf("%d %q, want %d %q", resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			if tt.wantURI != "" {
				if got, _ := f.up.lastURI.Load().(string); got != tt.wantURI {
					t.Errorf("upstream got %q, want %q", got, tt.wantURI)
				}
			}
			if tt.method == "HEAD" && resp.Header.Get("Content-Length") != "76" {
				t.Errorf("HEAD Content-Length %q, want 76", resp.Header.Get("Content-Length"))
			}
		})
	}
}

func TestPassthroughRejectsHostilePaths(t *testing.T) {
	t.Parallel()
	f := newPTFixture(t)
	for _, target := range []string{
		"/assets/%2e%2e/%2e%2e/etc/passwd",
		"/assets/a/%2E%2E/b.wasm",
		"/assets/a%00b.wasm",
		"/api/v0/x%0Ay",
		"/assets/a%5C..%5Cb",
	} {
		if got := rawGet(t, f.srv, target); got != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400", target, got)
		}
	}
	if n := f.up.requests.Load(); n != 0 {
		t.Errorf("upstream requests = %d, want 0", n)
	}
}

func TestPassthroughUnreachableWithoutCopy(t *testing.T) {
	// Not parallel: it closes its upstream and expects no answer, which a
	// parallel test's server taking the freed port would give.
	f := newPTFixture(t)
	f.up.srv.Close()
	resp, body := do(t, http.MethodGet, f.srv.URL+"/symbols.zip", nil)
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(string(body), "no cached copy") {
		t.Errorf("%d %q, want 504 saying there is no cached copy", resp.StatusCode, body)
	}
	// Where upstream lives (and what the resolver said) is for the log.
	up, _ := url.Parse(f.up.srv.URL)
	if strings.Contains(string(body), up.Host) || strings.Contains(string(body), up.Port()) {
		t.Errorf("answer %q names the upstream address %s", body, up.Host)
	}
}

func TestPassthroughNotConfigured(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(New(Options{Logger: zerolog.Nop()}).Handler())
	defer srv.Close()
	for _, p := range []string{"/symbols.zip", "/assets/a/b.wasm", "/api/v0/search?kw=x"} {
		if resp, _ := do(t, http.MethodGet, srv.URL+p, nil); resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("GET %s: %d, want 503", p, resp.StatusCode)
		}
	}
	if _, err := NewPassthrough(PassthroughOptions{}); err == nil {
		t.Error("NewPassthrough without a transport succeeded")
	}
}

// Large bodies stream through a file of their own: one cut short by
// upstream is passed on as a broken transfer and never kept; one over the
// size cap is passed on whole and not kept; a kept one is served from disk.
func TestPassthroughBodiesStreamed(t *testing.T) {
	t.Parallel()
	body := bytes.Repeat([]byte("wasm"), 4096) // 16 KiB
	var hits atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/assets/a/whole.wasm", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Write(body)
	})
	mux.HandleFunc("/assets/a/big.wasm", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Write(append(body, body...))
	})
	mux.HandleFunc("/assets/a/cut.wasm", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nCache-Control: max-age=3600\r\n\r\n", len(body))
		buf.Write(body[:len(body)/2])
		buf.Flush()
		conn.Close()
	})
	up := httptest.NewServer(mux)
	defer up.Close()
	dir := filepath.Join(t.TempDir(), "bodies")
	bodies, err := disk.NewBodies(dir, false, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	responses, err := disk.NewResponseCache(filepath.Join(t.TempDir(), "http-cache"), false, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewPassthrough(PassthroughOptions{
		DownloadURL: up.URL, APIURL: up.URL,
		Transport: upstream.NewCachingTransport(responses, nil), Bodies: bodies,
		MaxBodyBytes: int64(len(body)) + 1, Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(Options{Passthrough: h, Logger: zerolog.Nop()}).Handler())
	defer srv.Close()

	get := func(path string) (int, []byte, error) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	if code, b, err := get("/assets/a/cut.wasm"); err == nil && code == 200 && len(b) == len(body) {
		t.Errorf("a body upstream cut short arrived whole: %d, %d bytes, %v", code, len(b), err)
	} else if err == nil {
		t.Errorf("a body upstream cut short ended as if complete: %d, %d of %d bytes", code, len(b), len(body))
	}
	if code, b, err := get("/assets/a/big.wasm"); err != nil || code != 200 || len(b) != 2*len(body) {
		t.Errorf("a body over the cap: %d, %d bytes, %v; want it passed on whole", code, len(b), err)
	}
	for range 2 {
		if code, b, err := get("/assets/a/whole.wasm"); err != nil || code != 200 || !bytes.Equal(b, body) {
			t.Errorf("a kept body: %d, %d bytes, %v", code, len(b), err)
		}
	}
	if n := hits.Load(); n != 3 {
		t.Errorf("upstream saw %d requests, want 3 (the kept body served from disk the second time)", n)
	}
	for _, p := range []string{"/assets/a/cut.wasm", "/assets/a/big.wasm"} {
		if f, _, err := bodies.Open(up.URL + p); err == nil {
			f.Close()
			t.Errorf("%s was kept", p)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, ".tmp")); len(entries) != 0 {
		t.Errorf("temporary files left: %v", entries)
	}
}
