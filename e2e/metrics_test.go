package e2e

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"moonbit-registry/internal/testupstream"
)

// After known traffic, /metrics of the real binary counts exactly that
// traffic.
func TestMetricsMatchTraffic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const module = "moonbitlang/lex/runtime"
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{testupstream.EveryVersion(module)}})
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL()})
	client := newMoonClient(t, reg.URL)
	if err := client.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}
	versions := up.Index.Versions(module)
	if len(versions) < 2 {
		t.Fatalf("want at least 2 versions of %s, have %v", module, versions)
	}
	var fetchedBytes int
	for _, v := range versions { // misses
		b, err := client.Download(ctx, module, v)
		if err != nil {
			t.Fatal(err)
		}
		fetchedBytes += len(b)
	}
	for _, v := range versions[:2] { // hits
		if _, err := client.Download(ctx, module, v); err != nil {
			t.Fatal(err)
		}
	}
	get := func(path string) int {
		resp, err := http.Get(reg.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for range 3 {
		if code := get("/user/moonbitlang%2Flex%2Fruntime%2F99.0.0.zip"); code != http.StatusNotFound {
			t.Fatalf("unknown version: %d", code)
		}
	}
	if code := get("/user/..%2F..%2Fetc%2Fpasswd.zip"); code != http.StatusBadRequest {
		t.Fatalf("hostile path: %d", code)
	}

	m := scrape(t, reg.URL+"/metrics")
	n := len(versions)
	want := map[string]float64{
		`moonbit_registry_http_requests_total{code="200",method="GET",route="archive"}`: float64(n + 2),
		`moonbit_registry_http_requests_total{code="404",method="GET",route="archive"}`: 3,
		`moonbit_registry_http_requests_total{code="400",method="GET",route="archive"}`: 1,
		`moonbit_registry_cache_requests_total{outcome="hit",route="archive"}`:          2,
		`moonbit_registry_cache_requests_total{outcome="miss",route="archive"}`:         float64(n + 3),
		`moonbit_registry_cache_hits_total`:                                             2,
		`moonbit_registry_upstream_fetches_total{outcome="ok"}`:                         float64(n),
		`moonbit_registry_upstream_fetch_duration_seconds_count{outcome="ok"}`:          float64(n),
		`moonbit_registry_upstream_fetched_bytes_total`:                                 float64(fetchedBytes),
		`moonbit_registry_upstream_fetches_in_flight`:                                   0,
		`moonbit_registry_index_last_sync_success`:                                      1,
		`moonbit_registry_index_syncs_total`:                                            1,
	}
	for series, v := range want {
		got, ok := m[series]
		if !ok {
			t.Errorf("/metrics has no %s", series)
			continue
		}
		if got != v {
			t.Errorf("%s = %v, want %v", series, got, v)
		}
	}
	if got := m[`moonbit_registry_http_response_bytes_total{route="archive"}`]; got < float64(fetchedBytes) {
		t.Errorf("archive response bytes = %v, want at least the %d bytes downloaded", got, fetchedBytes)
	}
	if age := m[`moonbit_registry_index_sync_age_seconds`]; age < 0 || age > 600 {
		t.Errorf("index sync age = %v", age)
	}
}

// scrape reads a Prometheus text exposition into series -> value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad metrics line %q", line)
		}
		out[line[:i]] = v
	}
	return out
}
