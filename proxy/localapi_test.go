package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"moonbit-registry/catalog"
	"moonbit-registry/module"
)

// A thousand requests at once for an asset upstream does not have cost
// upstream one request; after the TTL upstream is asked again. Requests for
// an asset that exists are not held back by each other.
// The TTL runs on a clock of the test's: no wall-clock race decides it.
func TestPassthroughNotFoundRemembered(t *testing.T) {
	const ttl = time.Minute
	f := newPTFixtureWith(t, func(o *PassthroughOptions) { o.NotFoundTTL = ttl })
	var clock atomic.Int64 // nanoseconds since the test began
	start := time.Now()
	f.pt.notFound.now = func() time.Time { return start.Add(time.Duration(clock.Load())) }
	const path = "/assets/slow/missing.wasm"
	statuses := parallelGets(t, f.srv.URL+path, 200)
	for status, n := range statuses {
		if status != http.StatusNotFound {
			t.Errorf("%d answers with status %d, want 404", n, status)
		}
	}
	if n := f.up.count(path); n != 1 {
		t.Errorf("upstream asked %d times for a missing asset, want 1", n)
	}
	clock.Store(int64(ttl - time.Nanosecond))
	if resp, _ := do(t, http.MethodGet, f.srv.URL+path, nil); resp.StatusCode != http.StatusNotFound || f.up.count(path) != 1 {
		t.Errorf("just before the TTL ends: %d, upstream asked %d times; want 404 from memory", resp.StatusCode, f.up.count(path))
	}
	clock.Store(int64(ttl)) // the TTL runs out
	if resp, _ := do(t, http.MethodGet, f.srv.URL+path, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("after the TTL: %d", resp.StatusCode)
	}
	if n := f.up.count(path); n != 2 {
		t.Errorf("after the TTL upstream was asked %d times in all, want 2", n)
	}

	const present = "/assets/moonbitlang/x@0.4.1/core.wasm.sha256"
	if statuses := parallelGets(t, f.srv.URL+present, 50); statuses[http.StatusOK] != 50 {
		t.Errorf("an existing asset: statuses %v, want 50 × 200", statuses)
	}
}

func TestPassthroughNotFoundTTLOff(t *testing.T) {
	f := newPTFixtureWith(t, func(o *PassthroughOptions) { o.NotFoundTTL = -1 })
	const path = "/assets/moonbitlang/y@1.0.0/core.wasm"
	for range 3 {
		do(t, http.MethodGet, f.srv.URL+path, nil)
	}
	if n := f.up.count(path); n != 3 {
		t.Errorf("with the TTL off upstream was asked %d times, want 3", n)
	}
}

// parallelGets sends n GETs at once and counts the statuses.
func parallelGets(t *testing.T, u string, n int) map[int]int {
	t.Helper()
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(u)
			status := 0
			if err == nil {
				status = resp.StatusCode
				resp.Body.Close()
			}
			mu.Lock()
			statuses[status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return statuses
}

// A path under the download base that no route names is passed through and
// kept like an asset: served from the store when upstream is down.
func TestPassthroughUnknownDownloadPath(t *testing.T) {
	// Not parallel: it closes its upstream and expects no answer, which a
	// parallel test's server taking the freed port would give.
	f := newPTFixture(t)
	const path = "/future/artifact%2Bx.bin"
	resp, body := do(t, http.MethodGet, f.srv.URL+path, nil)
	if resp.StatusCode != http.StatusOK || string(body) != "future artifact /future/artifact+x.bin" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if got, _ := f.up.lastURI.Load().(string); got != path {
		t.Errorf("upstream got %q, want %q", got, path)
	}
	f.up.srv.Close()
	resp, body = do(t, http.MethodGet, f.srv.URL+path, nil)
	if resp.StatusCode != http.StatusOK || string(body) != "future artifact /future/artifact+x.bin" {
		t.Errorf("upstream down: %d %q, want the kept copy", resp.StatusCode, body)
	}
	before := f.up.requests.Load()
	for _, p := range []string{"/", "/git/other/info/refs"} {
		if resp, _ := do(t, http.MethodGet, f.srv.URL+p, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
	if n := f.up.requests.Load() - before; n != 0 {
		t.Errorf("the web root or a git path went upstream (%d requests)", n)
	}
}

// fixedCatalog answers every question the same way.
type fixedCatalog struct {
	err   error
	calls int
	mu    sync.Mutex
}

func (c *fixedCatalog) called() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	return c.err
}

func (c *fixedCatalog) Search(_ context.Context, kw string, limit int) ([]catalog.Summary, error) {
	if err := c.called(); err != nil {
		return nil, err
	}
	return []catalog.Summary{{Name: "local/" + kw, Version: fmt.Sprint(limit) + ".0.0"}}, nil
}

func (c *fixedCatalog) All(context.Context) ([]catalog.Summary, error) {
	return []catalog.Summary{{Name: "local/all", Version: "1.0.0"}}, c.called()
}

// View answers with the name and version asked for ("" for none: "latest").
func (c *fixedCatalog) View(_ context.Context, name, version string) (catalog.View, error) {
	if version == "" {
		version = "latest"
	}
	return catalog.View{Module: name, Version: version, Metadata: json.RawMessage(`{}`)}, c.called()
}

func (c *fixedCatalog) User(_ context.Context, owner string) (catalog.User, error) {
	return catalog.User{Username: owner, Modules: []catalog.Release{}}, c.called()
}

func TestPassthroughLocalAnswers(t *testing.T) {
	// Not parallel: it closes its upstream and expects no answer, which a
	// parallel test's server taking the freed port would give.
	notFound := fmt.Errorf("x: %w", catalog.ErrNotFound)
	stale := fmt.Errorf("%w: failing syncs", module.ErrIndexUnavailable)
	tests := []struct {
		name       string
		catErr     error
		upDown     bool
		path       string
		wantStatus int
		wantBody   string // substring
		wantLocal  bool
	}{
		{"upstream up: its answer", nil, false, "/api/v0/search?kw=json", 200, `"path":"/api/v0/search"`, false},
		{"upstream 5xx: local search", nil, false, "/api/v0/search?kw=json&fail=1", 200, `[{"name":"local/json","version":"20.0.0"}]`, true},
		{"upstream 5xx on a path the index cannot answer: passed on", nil, false, "/api/v0/broken", 500, "upstream bug", false},
		{"upstream down: local search", nil, true, "/api/v0/search?kw=json&limit=3", 200, `[{"name":"local/json","version":"3.0.0"}]`, true},
		{"default limit", nil, true, "/api/v0/search?kw=a", 200, `"version":"20.0.0"`, true},
		{"bad limit", nil, true, "/api/v0/search?kw=a&limit=x", 400, "limit", false},
		{"module list", nil, true, "/api/v0/modules", 200, `[{"name":"local/all","version":"1.0.0"}]`, true},
		{"module", nil, true, "/api/v0/modules/a/b", 200, `"module":"a/b","name":"","version":"latest"`, true},
		{"module at a version", nil, true, "/api/v0/modules/a/b@1.2.3", 200, `"module":"a/b","name":"","version":"1.2.3"`, true},
		{"manifest", nil, true, "/api/v0/manifest/a/b@1.2.3", 200, `"module":"a/b","name":"","version":"1.2.3"`, true},
		{"manifest of a nested module, build metadata kept", nil, true, "/api/v0/manifest/a/b/c@1.0.0-beta.1+build", 200, `"module":"a/b/c","name":"","version":"1.0.0-beta.1+build"`, true},
		{"manifest without version: the latest", nil, true, "/api/v0/manifest/a/b", 200, `"module":"a/b","name":"","version":"latest"`, true},
		{"user", nil, true, "/api/v0/user/alice", 200, `{"username":"alice","modules":[]}`, true},
		{"user's unknown subpath: not answered here", nil, true, "/api/v0/user/alice/code-frequency", 504, "", false},
		{"not in a current index", notFound, true, "/api/v0/modules/a/b", 404, "local index", true},
		{"index not current: upstream's failure", stale, true, "/api/v0/modules/a/b", 504, "try again later", false},
		{"path the index cannot answer", nil, true, "/api/v0/statistics", 504, "", false},
		{"upstream 507 becomes 502, which moon retries", nil, false, "/api/v0/statistics?fail=507", 502, "upstream bug", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cat := &fixedCatalog{err: tt.catErr}
			f := newPTFixtureWith(t, func(o *PassthroughOptions) { o.Catalog = cat })
			if tt.upDown {
				f.up.srv.Close()
			}
			resp, body := do(t, http.MethodGet, f.srv.URL+tt.path, nil)
			if resp.StatusCode != tt.wantStatus || !strings.Contains(string(body), tt.wantBody) {
				t.Fatalf("%d %q, want %d containing %q", resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			if got := resp.Header.Get(localAnswerHeader) != ""; got != tt.wantLocal {
				t.Errorf("answered locally: %v, want %v", got, tt.wantLocal)
			}
			if tt.wantLocal && resp.StatusCode == 200 && resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("a local answer must not be kept: Cache-Control %q", resp.Header.Get("Cache-Control"))
			}
		})
	}
}
