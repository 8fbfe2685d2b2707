package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"moonbit-registry/cache"
	"moonbit-registry/store"
)

func TestMetricsCountRequestsByRouteAndStatus(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	m.WatchCache(func() cache.Stats {
		return cache.Stats{Hits: 7, InFlight: 2, Evictions: 4, StoreBytes: 1 << 20, StoreFiles: 9}
	})
	m.WatchIndex(func() IndexHealth {
		return IndexHealth{LastSuccess: time.Now().Add(-time.Minute), LastOK: true, Syncs: 3, Failures: 1}
	})
	srv := New(Options{Metrics: m, Logger: zerolog.Nop()})
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()

	sent := []struct {
		path string
		n    int
	}{
		{"/healthz", 3},
		{"/user/..%2F..%2Fetc%2Fpasswd.zip", 2}, // 400 or 503: counted under archive
		{"/no/such/route", 4},
	}
	codes := map[string]int{}
	for _, s := range sent {
		for range s.n {
			resp, err := http.Get(ts.URL + s.path)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes[s.path] = resp.StatusCode
		}
	}
	check := func(route, method string, code, want int) {
		t.Helper()
		got := testutil.ToFloat64(m.requests.WithLabelValues(route, method, strconv.Itoa(code)))
		if int(got) != want {
			t.Errorf("requests{route=%s,code=%d} = %v, want %d", route, code, got, want)
		}
	}
	check("healthz", "GET", codes["/healthz"], 3)
	check("archive", "GET", codes["/user/..%2F..%2Fetc%2Fpasswd.zip"], 2)
	check("other", "GET", codes["/no/such/route"], 4)

	resp, err := http.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`moonbit_registry_http_requests_total{code="200",method="GET",route="healthz"} 3`,
		`moonbit_registry_cache_hits_total 7`,
		`moonbit_registry_upstream_fetches_in_flight 2`,
		`moonbit_registry_cache_evictions_total 4`,
		`moonbit_registry_store_bytes 1.048576e+06`,
		`moonbit_registry_store_files 9`,
		`moonbit_registry_index_syncs_total 3`,
		`moonbit_registry_index_sync_failures_total 1`,
		`moonbit_registry_index_last_sync_success 1`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestMetricsObserveFetchOutcomes(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	results := []cache.FetchResult{
		{Duration: time.Second},
		{Duration: time.Second},
		{Err: cache.ErrNotFound},
		{Err: &store.ChecksumError{}},
		{Err: cache.ErrUpstreamUnavailable},
		{Err: io.ErrUnexpectedEOF},
	}
	for _, r := range results {
		m.ObserveFetch(r)
	}
	for outcome, want := range map[string]float64{"ok": 2, "not_found": 1, "checksum_mismatch": 1, "unavailable": 1, "error": 1} {
		if got := testutil.ToFloat64(m.fetches.WithLabelValues(outcome)); got != want {
			t.Errorf("fetches{%s} = %v, want %v", outcome, got, want)
		}
	}
}

func TestRouteLabelsAreBounded(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]string{
		"/git/index/info/refs": "index", "/user/a/b/1.0.0.zip": "archive", "/symbols.zip": "symbols",
		"/assets/x": "assets", "/api/v0/search": "api", "/metrics": "metrics", "/" + strings.Repeat("x", 500): "other",
	} {
		if got := routeOf(path); got != want {
			t.Errorf("routeOf(%.30q) = %q, want %q", path, got, want)
		}
	}
}
