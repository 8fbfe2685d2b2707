package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"moonbit-registry/cache"
	"moonbit-registry/internal/testsupport"
	"moonbit-registry/module"
	"moonbit-registry/private"
	"moonbit-registry/store"
	"moonbit-registry/store/disk"
	"moonbit-registry/upstream"
)

// logBuffer collects the access log; the server writes it from handler
// goroutines.
type logBuffer struct{ testsupport.LogBuffer }

// cacheOutcomes returns the "cache" field of every access-log line for path.
func (b *logBuffer) cacheOutcomes(path string) []string {
	var out []string
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.Contains(line, `"message":"request"`) && strings.Contains(line, `"path":"`+path+`"`) {
			if _, rest, ok := strings.Cut(line, `"cache":"`); ok {
				v, _, _ := strings.Cut(rest, `"`)
				out = append(out, v)
			}
		}
	}
	return out
}

// waitOutcomes polls until the log holds at least n lines for path: the
// server writes the access-log line after the response has gone out.
func (b *logBuffer) waitOutcomes(t *testing.T, path string, n int) []string {
	t.Helper()
	for i := 0; ; i++ {
		got := b.cacheOutcomes(path)
		if len(got) >= n || i == 200 {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// archiveIndex is a map-backed cache.Index that counts lookups.
type archiveIndex struct {
	mu      sync.Mutex
	sums    map[string]string
	lookups atomic.Int64
}

func (x *archiveIndex) Checksum(ctx context.Context, module, version string) (string, bool, error) {
	x.lookups.Add(1)
	x.mu.Lock()
	defer x.mu.Unlock()
	s, ok := x.sums[module+"@"+version]
	return s, ok, nil
}

func (x *archiveIndex) RequestRefresh(ctx context.Context) error { return nil }

type archiveFixture struct {
	srv      *httptest.Server // the proxy
	upstream *httptest.Server
	requests atomic.Int64 // upstream requests
	index    *archiveIndex
	files    map[string][]byte // upstream content by decoded path
	log      *logBuffer
	// unannounced: upstream sends bodies without Content-Length.
	unannounced atomic.Bool
	// midway, if set, is waited for after upstream sent half a body.
	midway chan struct{}
	cache  *cache.Cache
}

// settle waits (bounded) until no fetch runs: a streamed miss answers
// before its archive is committed.
func (f *archiveFixture) settle() {
	for i := 0; f.cache.Stats().InFlight > 0 && i < 500; i++ {
		time.Sleep(10 * time.Millisecond)
	}
}

func sum256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// newArchiveFixture runs the proxy over a real cache (a disk store in a temp
// dir) and a fake upstream serving the given archives. tamper lists archives
// upstream serves with wrong bytes.
func newArchiveFixture(t *testing.T, offline bool, mvs []module.Version, tamper ...module.Version) *archiveFixture {
	t.Helper()
	f := &archiveFixture{index: &archiveIndex{sums: map[string]string{}}, files: map[string][]byte{}, log: &logBuffer{}}
	for _, mv := range mvs {
		b := []byte(strings.Repeat("PK archive of "+mv.String()+"\n", 500))
		f.index.sums[mv.String()] = sum256(b)
		f.files["/user/"+mv.RelPath()] = b
	}
	tampered := map[string]bool{}
	for _, mv := range tamper {
		tampered["/user/"+mv.RelPath()] = true
	}
	f.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		b, ok := f.files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if tampered[r.URL.Path] {
			b = append([]byte("evil"), b[4:]...)
		}
		if !f.unannounced.Load() {
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		}
		if f.midway != nil {
			w.Write(b[:len(b)/2])
			http.NewResponseController(w).Flush()
			<-f.midway
			b = b[len(b)/2:]
		}
		w.Write(b)
	}))
	t.Cleanup(f.upstream.Close)

	archives, err := disk.New(disk.Options{Root: filepath.Join(t.TempDir(), "packages"), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	var fetcher cache.Fetcher // nil: offline
	if !offline {
		fetcher, err = upstream.NewFetcher(upstream.FetcherOptions{DownloadURL: f.upstream.URL, Retries: -1, RetryBackoff: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
	}
	c, err := cache.New(cache.Options{Store: archives, Index: f.index, Fetcher: fetcher, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	f.cache = c
	t.Cleanup(f.settle) // before the store's directory goes
	s := New(Options{Archives: c, Logger: zerolog.New(f.log)})
	f.srv = httptest.NewServer(s.Handler())
	t.Cleanup(f.srv.Close)
	return f
}

func (f *archiveFixture) content(mv module.Version) []byte {
	return f.files["/user/"+mv.RelPath()]
}

func do(t *testing.T, method, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// rawGet sends target exactly as given, bypassing the client's URL handling.
func rawGet(t *testing.T, srv *httptest.Server, target string) int {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n", target)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

var (
	nestedMV  = module.Version{Module: "moonbitlang/lex/runtime", Version: "0.1.0"}
	chineseMV = module.Version{Module: "CAIMEOX/原来可以发中文包", Version: "0.1.2+3"}
)

// oneSegment is the form current clients send: owner%2Frest%2Fversion.zip.
func oneSegment(mv module.Version) string { return "/user/" + url.QueryEscape(mv.RelPath()) }

// plainPath is the documented form with slashes.
func plainPath(mv module.Version) string {
	segs := strings.Split(mv.RelPath(), "/")
	for i, s := range segs {
		segs[i] = strings.ReplaceAll(url.PathEscape(s), "+", "%2B")
	}
	return "/user/" + strings.Join(segs, "/")
}

func TestArchiveBothFormsMissThenHit(t *testing.T) {
	t.Parallel()
	for _, mv := range []module.Version{nestedMV, chineseMV} {
		t.Run(mv.String(), func(t *testing.T) {
			f := newArchiveFixture(t, false, []module.Version{mv})
			want := f.content(mv)
			paths := []string{oneSegment(mv), plainPath(mv), oneSegment(mv)}
			for _, p := range paths {
				f.settle() // the miss is committed: the next requests are hits
				resp, body := do(t, http.MethodGet, f.srv.URL+p, nil)
				if resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
					t.Fatalf("GET %s: %d, %d bytes; want 200, %d bytes", p, resp.StatusCode, len(body), len(want))
				}
				for k, v := range map[string]string{
					"Content-Type":   "application/zip",
					"Cache-Control":  "public, max-age=31536000, immutable",
					"ETag":           `"` + sum256(want) + `"`,
					"Content-Length": fmt.Sprint(len(want)),
				} {
					if got := resp.Header.Get(k); got != v {
						t.Errorf("GET %s: %s = %q, want %q", p, k, got, v)
					}
				}
			}
			if n := f.requests.Load(); n != 1 {
				t.Errorf("upstream requests = %d, want 1", n)
			}
			// The first and third requests share a path; their log lines
			// may be written in either order. With one upstream request
			// the miss can only be the first.
			first := f.log.waitOutcomes(t, paths[0], 2)
			slices.Sort(first)
			got := append(first, f.log.waitOutcomes(t, paths[1], 1)...)
			if strings.Join(got, ",") != "hit,miss,hit" {
				t.Errorf("access log cache outcomes = %v, want a miss and a hit for %s, a hit for %s", got, paths[0], paths[1])
			}
		})
	}
}

func TestArchiveConditionalRangeHead(t *testing.T) {
	t.Parallel()
	f := newArchiveFixture(t, false, []module.Version{nestedMV})
	want := f.content(nestedMV)
	u := f.srv.URL + oneSegment(nestedMV)
	etag := `"` + sum256(want) + `"`

	tests := []struct {
		name       string
		method     string
		hdr        map[string]string
		wantStatus int
		wantBody   []byte
		wantLen    string
	}{
		{"get", http.MethodGet, nil, 200, want, fmt.Sprint(len(want))},
		{"if-none-match", http.MethodGet, map[string]string{"If-None-Match": etag}, 304, nil, ""},
		{"if-none-match other", http.MethodGet, map[string]string{"If-None-Match": `"nope"`}, 200, want, fmt.Sprint(len(want))},
		{"range", http.MethodGet, map[string]string{"Range": "bytes=2-11"}, 206, want[2:12], "10"},
		{"range suffix", http.MethodGet, map[string]string{"Range": "bytes=-5"}, 206, want[len(want)-5:], "5"},
		{"head", http.MethodHead, nil, 200, nil, fmt.Sprint(len(want))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, tt.method, u, tt.hdr)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if !bytes.Equal(body, tt.wantBody) {
				t.Errorf("body %d bytes, want %d", len(body), len(tt.wantBody))
			}
			if got := resp.Header.Get("Content-Length"); got != tt.wantLen {
				t.Errorf("Content-Length %q, want %q", got, tt.wantLen)
			}
			if got := resp.Header.Get("ETag"); got != etag {
				t.Errorf("ETag %q, want %q", got, etag)
			}
		})
	}
	if n := f.requests.Load(); n != 1 {
		t.Errorf("upstream requests = %d, want 1", n)
	}
}

// TestArchiveHitHeadersAsServeContent: a plain GET of a stored archive
// skips http.ServeContent, yet answers with the very headers it gives (a
// HEAD still goes through it) and the whole body.
func TestArchiveHitHeadersAsServeContent(t *testing.T) {
	t.Parallel()
	f := newArchiveFixture(t, false, []module.Version{nestedMV})
	want := f.content(nestedMV)
	u := f.srv.URL + oneSegment(nestedMV)
	do(t, http.MethodGet, u, nil) // the miss
	f.settle()
	head, _ := do(t, http.MethodHead, u, nil)
	get, body := do(t, http.MethodGet, u, nil)
	if get.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
		t.Fatalf("GET: %d, %d bytes; want 200 and the archive", get.StatusCode, len(body))
	}
	for _, k := range []string{"Content-Type", "Content-Length", "Last-Modified", "Accept-Ranges", "ETag", "Cache-Control"} {
		if g, h := get.Header.Get(k), head.Header.Get(k); g != h || g == "" {
			t.Errorf("%s: GET %q, ServeContent's HEAD %q", k, g, h)
		}
	}
}

func TestArchiveErrors(t *testing.T) {
	// Not parallel: it closes its upstream and expects no answer, which a
	// parallel test's server taking the freed port would give.
	unknown := module.Version{Module: "nobody/nothing", Version: "1.0.0"}
	tests := []struct {
		name       string
		offline    bool
		down       bool
		method     string
		mv         module.Version
		wantStatus int
		wantText   string
		hdr        map[string]string
	}{
		{name: "unknown version", mv: unknown, wantStatus: 404, wantText: "not in the index"},
		// A ranged request waits for the whole archive, so the mismatch is
		// a status; a plain GET streams the miss and is cut short instead
		// (TestArchiveStreamedMismatchAborts).
		{name: "checksum mismatch", mv: chineseMV, wantStatus: 502, wantText: "checksum mismatch", hdr: map[string]string{"Range": "bytes=0-"}},
		{name: "offline miss", offline: true, mv: nestedMV, wantStatus: 504, wantText: "archive moonbitlang/lex/runtime@0.1.0 is not cached and this registry is offline by choice (serve --offline): add it with `moonbit-registry mirror moonbitlang/lex/runtime@0.1.0`"},
		{name: "upstream down", down: true, mv: nestedMV, wantStatus: 504, wantText: "is not cached and upstream is unreachable"},
		{name: "post", method: http.MethodPost, mv: nestedMV, wantStatus: 405},
		{name: "delete", method: http.MethodDelete, mv: nestedMV, wantStatus: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newArchiveFixture(t, tt.offline, []module.Version{nestedMV, chineseMV}, chineseMV)
			if tt.down {
				f.upstream.Close()
			}
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			resp, body := do(t, method, f.srv.URL+oneSegment(tt.mv), tt.hdr)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tt.wantStatus)
			}
			if !strings.Contains(string(body), tt.wantText) {
				t.Errorf("body %q does not say %q", body, tt.wantText)
			}
			if resp.Header.Get("Cache-Control") == "public, max-age=31536000, immutable" {
				t.Error("an error response was marked immutable")
			}
		})
	}
}

func TestArchiveRejectsHostilePaths(t *testing.T) {
	t.Parallel()
	f := newArchiveFixture(t, false, []module.Version{nestedMV})
	for _, target := range []string{
		"/user/%2e%2e%2F%2e%2e%2Fetc%2Fpasswd.zip",
		"/user/..%2F..%2Fx%2F1.0.0.zip",
		"/user/moonbitlang%2F%2e%2e%2F0.1.0.zip",
		"/user/moonbitlang%2Flex%00%2F0.1.0.zip",
		"/user/moonbitlang%2F%2Fx%2F0.1.0.zip",
		"/user/moonbitlang%5Clex%2Fruntime%2F0.1.0.zip",
		"/user/.tmp%2Fput-1%2F1.0.0.zip",
		"/user/moonbitlang%2Flex%2F0.1.zip",
		"/user/moonbitlang%2Flex%2F0.1.0.tar",
		"/user/moonbitlang%2Flex%2Fruntime%2F0.1.0",
		"/user/" + strings.Repeat("a%2F", 800) + "0.1.0.zip",
		"/user/%zz",
	} {
		if got := rawGet(t, f.srv, target); got != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400", target, got)
		}
	}
	// Literal dot segments are cleaned (and redirected) by the router before
	// any handler runs; they must not be served either.
	for _, target := range []string{"/user/../user/moonbitlang/lex/runtime/0.1.0.zip", "/user/moonbitlang/lex/./runtime/0.1.0.zip"} {
		if got := rawGet(t, f.srv, target); got == http.StatusOK {
			t.Errorf("GET %s: 200", target)
		}
	}
	if n := f.requests.Load(); n != 0 {
		t.Errorf("upstream requests = %d, want 0", n)
	}
	if n := f.index.lookups.Load(); n != 0 {
		t.Errorf("index lookups = %d, want 0", n)
	}
}

func TestArchiveWithoutCache(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(New(Options{Logger: zerolog.Nop()}).Handler())
	defer srv.Close()
	resp, _ := do(t, http.MethodGet, srv.URL+oneSegment(nestedMV), nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", resp.StatusCode)
	}
}

// TestStatusOf: the one table from errors to statuses, for archives,
// the pass-through and publishing.
func TestStatusOf(t *testing.T) {
	t.Parallel()
	mv := module.Version{Module: "a/b", Version: "1.0.0"}
	tests := []struct {
		err  error
		want int
	}{
		{fmt.Errorf("x: %w", module.ErrBadName), http.StatusBadRequest},
		{fmt.Errorf("x: %w", cache.ErrNotFound), http.StatusNotFound},
		{&store.ChecksumError{Archive: mv}, http.StatusBadGateway},
		{fmt.Errorf("x: %w", cache.ErrUpstreamUnavailable), http.StatusGatewayTimeout},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), http.StatusGatewayTimeout},
		{fmt.Errorf("store a/b@1.0.0: put: %w: write /srv/data/.tmp/x: no space left on device", store.ErrWrite), http.StatusServiceUnavailable},
		{fmt.Errorf("x: %w", cache.ErrUpstream), http.StatusBadGateway},
		{fmt.Errorf("index lookup a/b@1.0.0: %w", fmt.Errorf("%w: not synced", module.ErrIndexUnavailable)), http.StatusServiceUnavailable},
		{errors.New("open /srv/data/packages/a/b/1.0.0.zip: permission denied"), http.StatusInternalServerError},
		{fmt.Errorf("x: %w", private.ErrInvalid), http.StatusBadRequest},
		{fmt.Errorf("x: %w", private.ErrTooLarge), http.StatusRequestEntityTooLarge},
		{fmt.Errorf("x: %w", private.ErrNotReserved), http.StatusForbidden},
		{fmt.Errorf("x: %w", private.ErrReadOnly), http.StatusForbidden},
		{fmt.Errorf("x: %w", private.ErrConflict), http.StatusConflict},
		{fmt.Errorf("x: %w", private.ErrUnknown), http.StatusNotFound},
		{fmt.Errorf("x: %w", private.ErrIndexPending), http.StatusServiceUnavailable},
		{fmt.Errorf("x: %w", store.ErrUnavailable), http.StatusServiceUnavailable},
		// The pass-through's upstream exchanges.
		{upstreamFailure(&net.OpError{Op: "dial", Err: errors.New("connection refused")}), http.StatusGatewayTimeout},
		{upstreamFailure(io.ErrUnexpectedEOF), http.StatusGatewayTimeout},
		{upstreamFailure(fmt.Errorf("x: %w", context.DeadlineExceeded)), http.StatusGatewayTimeout},
		{upstreamFailure(errors.New("stopped after 10 redirects")), http.StatusBadGateway},
	}
	for _, tt := range tests {
		if got := statusOf(tt.err); got != tt.want {
			t.Errorf("statusOf(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

// streamArchives serves one archive from an object that cannot seek, as an
// object store's body is.
type streamArchives struct {
	body []byte
	mod  time.Time
}

type streamObject struct {
	io.Reader
	info store.Info
}

func (o streamObject) Close() error     { return nil }
func (o streamObject) Info() store.Info { return o.info }

func (s streamArchives) Get(ctx context.Context, mv module.Version) (store.Object, cache.Outcome, error) {
	info := store.Info{Size: int64(len(s.body)), ModTime: s.mod, SHA256: sum256(s.body)}
	return streamObject{Reader: bytes.NewReader(s.body), info: info}, cache.OutcomeHit, nil
}

func (s streamArchives) GetStream(ctx context.Context, mv module.Version) (store.Object, *cache.Stream, cache.Outcome, error) {
	obj, outcome, err := s.Get(ctx, mv)
	return obj, nil, outcome, err
}

func (s streamArchives) Ping(ctx context.Context) error { return nil }

func (s streamArchives) Checksum(ctx context.Context, mv module.Version) (string, bool, error) {
	return sum256(s.body), true, nil
}

func TestArchiveFromObjectWithoutSeek(t *testing.T) {
	t.Parallel()
	arch := streamArchives{body: []byte("zip bytes from a store that cannot seek"), mod: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	srv := httptest.NewServer(New(Options{Archives: arch, Logger: zerolog.Nop()}).Handler())
	defer srv.Close()
	u := srv.URL + "/user/a/b/1.0.0.zip"
	etag := `"` + sum256(arch.body) + `"`
	tests := []struct {
		name       string
		method     string
		hdr        map[string]string
		wantStatus int
		wantBody   string
	}{
		{"GET", http.MethodGet, nil, http.StatusOK, string(arch.body)},
		{"HEAD", http.MethodHead, nil, http.StatusOK, ""},
		{"If-None-Match", http.MethodGet, map[string]string{"If-None-Match": etag}, http.StatusNotModified, ""},
		{"If-None-Match other", http.MethodGet, map[string]string{"If-None-Match": `"other"`}, http.StatusOK, string(arch.body)},
		{"If-Modified-Since", http.MethodGet, map[string]string{"If-Modified-Since": arch.mod.Format(http.TimeFormat)}, http.StatusNotModified, ""},
		{"If-Modified-Since earlier", http.MethodGet, map[string]string{"If-Modified-Since": arch.mod.Add(-time.Hour).Format(http.TimeFormat)}, http.StatusOK, string(arch.body)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, tt.method, u, tt.hdr)
			if resp.StatusCode != tt.wantStatus || string(body) != tt.wantBody {
				t.Fatalf("%d %q, want %d %q", resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			if tt.wantStatus == http.StatusOK && resp.Header.Get("Content-Length") != fmt.Sprint(len(arch.body)) {
				t.Errorf("Content-Length %q, want %d", resp.Header.Get("Content-Length"), len(arch.body))
			}
			if resp.Header.Get("ETag") != etag || resp.Header.Get("Last-Modified") != arch.mod.Format(http.TimeFormat) {
				t.Errorf("ETag %q Last-Modified %q", resp.Header.Get("ETag"), resp.Header.Get("Last-Modified"))
			}
		})
	}
}
