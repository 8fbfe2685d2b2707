package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"moonbit-registry/store/disk"

	"github.com/rs/zerolog"
)

// symbolsUpstream serves /symbols.zip with an ETag and the given
// Cache-Control, answering 304 to a matching If-None-Match.
type symbolsUpstream struct {
	srv          *httptest.Server
	mu           sync.Mutex
	version      int
	cacheControl string
	status       int // if non-zero, answer this instead
	requests     atomic.Int64
	conditional  atomic.Int64 // requests that carried If-None-Match
	sawStaleDir  atomic.Bool  // a request leaked our stale-if-error directive
}

func newSymbolsUpstream(t *testing.T, cacheControl string) *symbolsUpstream {
	u := &symbolsUpstream{version: 1, cacheControl: cacheControl}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.requests.Add(1)
		if HasDirective(r.Header.Get("Cache-Control"), staleIfError) {
			u.sawStaleDir.Store(true)
		}
		u.mu.Lock()
		v, cc, st := u.version, u.cacheControl, u.status
		u.mu.Unlock()
		if st != 0 {
			http.Error(w, "broken", st)
			return
		}
		etag := fmt.Sprintf(`"symbols-v%d"`, v)
		w.Header().Set("ETag", etag)
		if cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
		if inm := r.Header.Get("If-None-Match"); inm != "" {
			u.conditional.Add(1)
			if inm == etag {
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
		w.Header().Set("Content-Type", "application/zip")
		fmt.Fprintf(w, "symbols version %d", v)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *symbolsUpstream) set(f func(u *symbolsUpstream)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	f(u)
}

func fetchThrough(t *testing.T, rt http.RoundTripper, url string) (string, int, Served, error) {
	t.Helper()
	ctx, tracker := TrackOutcome(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return "", 0, ServedUpstream, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), resp.StatusCode, tracker.Outcome(resp), nil
}

func newCachingTransport(t *testing.T) (*CachingTransport, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "http-cache")
	return NewCachingTransport(responseCache(t, dir), nil), dir
}

func responseCache(t *testing.T, dir string) *disk.ResponseCache {
	t.Helper()
	c, err := disk.NewResponseCache(dir, false, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCachingTransportRevalidatesAndServesStale(t *testing.T) {
	up := newSymbolsUpstream(t, "no-cache")
	rt, _ := newCachingTransport(t)
	url := up.srv.URL + "/symbols.zip"

	steps := []struct {
		name        string
		before      func()
		wantBody    string
		wantOutcome Served
	}{
		{"first request fills the cache", nil, "symbols version 1", ServedUpstream},
		{"revalidated with 304", nil, "symbols version 1", ServedStored},
		{"new version replaces the stored one", func() { up.set(func(u *symbolsUpstream) { u.version = 2 }) }, "symbols version 2", ServedUpstream},
		{"upstream 5xx serves stored copy", func() { up.set(func(u *symbolsUpstream) { u.status = 503 }) }, "symbols version 2", ServedStale},
		{"upstream down serves stored copy", func() { up.srv.Close() }, "symbols version 2", ServedStale},
	}
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		body, code, outcome, err := fetchThrough(t, rt, url)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if code != http.StatusOK || body != s.wantBody || outcome != s.wantOutcome {
			t.Errorf("%s: %d %q %s, want 200 %q %s", s.name, code, body, outcome, s.wantBody, s.wantOutcome)
		}
	}
	if up.conditional.Load() < 2 {
		t.Errorf("upstream saw %d conditional requests, want revalidation", up.conditional.Load())
	}
	if up.sawStaleDir.Load() {
		t.Error("stale-if-error directive leaked upstream")
	}
}

func TestCachingTransportFreshHitSkipsUpstream(t *testing.T) {
	up := newSymbolsUpstream(t, "max-age=3600")
	rt, _ := newCachingTransport(t)
	url := up.srv.URL + "/symbols.zip"
	for i, want := range []Served{ServedUpstream, ServedStored, ServedStored} {
		if _, _, got, err := fetchThrough(t, rt, url); err != nil || got != want {
			t.Errorf("request %d: %s, %v; want %s", i, got, err, want)
		}
	}
	if n := up.requests.Load(); n != 1 {
		t.Errorf("upstream requests = %d, want 1", n)
	}
}

func TestCachingTransportDoesNotStoreErrors(t *testing.T) {
	// 404s included: storing them would let clients grow the cache without
	// bound by asking for paths that do not exist.
	for _, status := range []int{500, 404} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			up := newSymbolsUpstream(t, "max-age=3600")
			up.set(func(u *symbolsUpstream) { u.status = status })
			rt, dir := newCachingTransport(t)
			url := up.srv.URL + "/symbols.zip"

			if _, code, outcome, err := fetchThrough(t, rt, url); err != nil || code != status || outcome != ServedUpstream {
				t.Fatalf("got %d %s %v, want the %d passed on", code, outcome, err, status)
			}
			up.srv.Close()
			if _, _, _, err := fetchThrough(t, rt, url); err == nil {
				t.Errorf("a stored %d was served while upstream was down", status)
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if e.Name() != ".tmp" {
					t.Errorf("unexpected cache entry %s", e.Name())
				}
			}
		})
	}
}

func TestOnlyCacheableStatusesStored(t *testing.T) {
	c, err := disk.NewResponseCache(filepath.Join(t.TempDir(), "http-cache"), false, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	k := keepCacheable{c}
	k.Set("ok", []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	if b, ok := c.Get("ok"); !ok || len(b) == 0 {
		t.Error("200 not stored")
	}
	for _, status := range []string{"502 Bad Gateway", "404 Not Found", "garbage"} {
		k.Set("bad", []byte("HTTP/1.1 "+status+"\r\n\r\n"))
		if _, ok := c.Get("bad"); ok {
			t.Errorf("%s stored", status)
		}
	}
}

func TestOfflineTransportServesOnlyWhatIsStored(t *testing.T) {
	up := newSymbolsUpstream(t, "no-cache")
	dir := filepath.Join(t.TempDir(), "http-cache")
	online := NewCachingTransport(responseCache(t, dir), nil)
	if _, _, _, err := fetchThrough(t, online, up.srv.URL+"/symbols.zip"); err != nil {
		t.Fatal(err)
	}
	offline := NewCachingTransport(responseCache(t, dir), OfflineTransport{})
	before := up.requests.Load()
	body, code, outcome, err := fetchThrough(t, offline, up.srv.URL+"/symbols.zip")
	if err != nil || code != http.StatusOK || body != "symbols version 1" || outcome != ServedStale {
		t.Errorf("stored: %q %d %s %v, want the stored copy", body, code, outcome, err)
	}
	if _, _, _, err := fetchThrough(t, offline, up.srv.URL+"/api/v0/never-stored"); !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrOffline) {
		t.Errorf("not stored: err = %v, want ErrUnavailable and ErrOffline", err)
	}
	if up.requests.Load() != before {
		t.Errorf("offline transport reached upstream (%d -> %d requests)", before, up.requests.Load())
	}
}

func TestCachingTransportDoesNotStoreQueries(t *testing.T) {
	up := newSymbolsUpstream(t, "max-age=3600")
	rt, dir := newCachingTransport(t)
	for i := range 5 {
		if _, code, _, err := fetchThrough(t, rt, fmt.Sprintf("%s/api/v0/search?kw=x%d", up.srv.URL, i)); err != nil || code != 200 {
			t.Fatalf("search %d: %d %v", i, code, err)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != ".tmp" {
			t.Errorf("a query response was stored: %s", e.Name())
		}
	}
	if got := up.requests.Load(); got != 5 {
		t.Errorf("upstream saw %d requests, want all 5", got)
	}
}

func TestAuthorizeOnlyUpstreamHosts(t *testing.T) {
	var elsewhere string
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere = r.Header.Get("Authorization")
	}))
	defer cdn.Close()
	var atUpstream string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		atUpstream = r.Header.Get("Authorization")
		http.Redirect(w, r, cdn.URL+"/blob", http.StatusFound)
	}))
	defer up.Close()
	host := strings.TrimPrefix(up.URL, "http://")
	client := &http.Client{Transport: Authorize(nil, "Bearer secret", host)}
	resp, err := client.Get(up.URL + "/symbols.zip")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if atUpstream != "Bearer secret" || elsewhere != "" {
		t.Errorf("Authorization at upstream %q, at the redirect's host %q; want it only at upstream", atUpstream, elsewhere)
	}
	if Authorize(http.DefaultTransport, "") != http.DefaultTransport {
		t.Error("without a value Authorize must return next itself")
	}
}
