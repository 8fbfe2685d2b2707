package proxy

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"moonbit-registry/cache"
	"moonbit-registry/store"
)

// IndexHealth is what the metrics need from the index mirror.
type IndexHealth struct {
	LastSync, LastSuccess time.Time
	LastOK                bool
	Syncs, Failures       uint64
}

// Metrics holds the Prometheus collectors of one server, in a registry of
// its own (no process-wide default registry), served at /metrics.
type Metrics struct {
	registry      *prometheus.Registry
	requests      *prometheus.CounterVec
	responseBytes *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	cacheOutcomes *prometheus.CounterVec
	fetches       *prometheus.CounterVec
	fetchDuration *prometheus.HistogramVec
	storeOps      *prometheus.HistogramVec
	// hit is the series of the commonest request, an archive GET answered
	// 200 from the store, looked up once instead of on every hit.
	hit requestSeries
}

// requestSeries is what one finished request adds to: its count, bytes
// and duration, and its cache outcome (nil when it had none).
type requestSeries struct {
	requests, bytes, outcome prometheus.Counter
	duration                 prometheus.Observer
}

// FleetStats is what the metrics show of the coordination between
// replicas sharing a bucket (fleet.LeaseStats, read at scrape time).
type FleetStats struct {
	// Acquired counts leases this replica took: the attempts it ran for
	// the fleet. Waited counts attempts that waited for another replica,
	// TakenOver expired leases taken over, Outcomes failures answered from
	// another replica's recorded outcome.
	Acquired, Waited, TakenOver, Outcomes int64
}

// NewMetrics registers the request collectors and the Go runtime and
// process metrics; WatchCache and WatchIndex add the figures of the parts
// once they exist.
func NewMetrics() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moonbit_registry_http_requests_total",
			Help: "HTTP requests served, by route, method and status code.",
		}, []string{"route", "method", "code"}),
		responseBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moonbit_registry_http_response_bytes_total",
			Help: "Response body bytes sent, by route.",
		}, []string{"route"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "moonbit_registry_http_request_duration_seconds",
			Help:    "Time to serve a request, by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10), // 0.5ms .. ~2min
		}, []string{"route"}),
		cacheOutcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moonbit_registry_cache_requests_total",
			Help: "Archive and pass-through requests by cache outcome (hit, miss, stale).",
		}, []string{"route", "outcome"}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moonbit_registry_upstream_fetches_total",
			Help: "Upstream archive fetches (one per coalesced group) by outcome.",
		}, []string{"outcome"}),
		fetchDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "moonbit_registry_upstream_fetch_duration_seconds",
			Help:    "Time of upstream archive fetches, retries included, by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.01, 3, 10), // 10ms .. ~3min
		}, []string{"outcome"}),
		storeOps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "moonbit_registry_store_request_duration_seconds",
			Help:    "Requests to a remote archive store (S3), by operation and result.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10), // 0.5ms .. ~2min
		}, []string{"op", "result"}),
	}
	m.registry.MustRegister(
		m.requests, m.responseBytes, m.duration, m.cacheOutcomes, m.fetches, m.fetchDuration, m.storeOps,
		prometheus.NewGoCollector(),
		prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}),
	)
	m.hit = m.series("archive", http.MethodGet, http.StatusOK, string(cache.OutcomeHit))
	return m
}

// WatchCache exports the archive pipeline's counters, read at scrape time.
// Call it once.
func (m *Metrics) WatchCache(stats func() cache.Stats) {
	counter := func(name, help string, get func(cache.Stats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(get(stats())) })
	}
	gauge := func(name, help string, get func(cache.Stats) int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
			func() float64 { return float64(get(stats())) })
	}
	m.registry.MustRegister(
		counter("moonbit_registry_cache_hits_total", "Archive requests answered from the store.",
			func(s cache.Stats) int64 { return s.Hits }),
		counter("moonbit_registry_cache_coalesced_waiters_total", "Archive misses that waited for a fetch another request started.",
			func(s cache.Stats) int64 { return s.Coalesced }),
		counter("moonbit_registry_upstream_requests_total", "Upstream archive HTTP attempts, retries included.",
			func(s cache.Stats) int64 { return s.UpstreamRequests }),
		counter("moonbit_registry_upstream_fetched_bytes_total", "Bytes of archives fetched and stored.",
			func(s cache.Stats) int64 { return s.BytesFetched }),
		gauge("moonbit_registry_upstream_fetches_in_flight", "Upstream archive fetches running now.",
			func(s cache.Stats) int64 { return s.InFlight }),
		counter("moonbit_registry_cache_evictions_total", "Archives evicted to keep the store under cache.max_size.",
			func(s cache.Stats) int64 { return s.Evictions }),
		gauge("moonbit_registry_store_bytes", "Bytes of archives in the store (tracked when cache.max_size is set).",
			func(s cache.Stats) int64 { return s.StoreBytes }),
		gauge("moonbit_registry_store_files", "Archives in the store (tracked when cache.max_size is set).",
			func(s cache.Stats) int64 { return s.StoreFiles }),
	)
}

// WatchIndex exports the index mirror's sync health, read at scrape time.
// Call it once.
func (m *Metrics) WatchIndex(health func() IndexHealth) {
	m.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "moonbit_registry_index_sync_age_seconds",
			Help: "Seconds since the index mirror last synced successfully (-1: never).",
		}, func() float64 {
			h := health()
			if h.LastSuccess.IsZero() {
				return -1
			}
			return time.Since(h.LastSuccess).Seconds()
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "moonbit_registry_index_last_sync_success",
			Help: "1 if the last index sync succeeded, 0 if it failed or none ran yet.",
		}, func() float64 {
			if health().LastOK {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "moonbit_registry_index_syncs_total",
			Help: "Index syncs attempted.",
		}, func() float64 { return float64(health().Syncs) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "moonbit_registry_index_sync_failures_total",
			Help: "Index syncs that failed.",
		}, func() float64 { return float64(health().Failures) }),
	)
}

// WatchFleet exports the leases' counters, read at scrape time. Call it
// once, with a fleet.
func (m *Metrics) WatchFleet(stats func() FleetStats) {
	counter := func(name, help string, get func(FleetStats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(get(stats())) })
	}
	m.registry.MustRegister(
		counter("moonbit_registry_fleet_leases_taken_total", "Archive leases this replica took: attempts it ran for the fleet (moonbit_registry_upstream_fetches_total counts the fetches).",
			func(s FleetStats) int64 { return s.Acquired }),
		counter("moonbit_registry_fleet_lease_waits_total", "Archive misses that waited for another replica's fetch.",
			func(s FleetStats) int64 { return s.Waited }),
		counter("moonbit_registry_fleet_lease_takeovers_total", "Expired leases (their replica died) taken over.",
			func(s FleetStats) int64 { return s.TakenOver }),
		counter("moonbit_registry_fleet_shared_failures_total", "Misses answered from another replica's recorded not-found or checksum mismatch.",
			func(s FleetStats) int64 { return s.Outcomes }),
	)
}

// ObserveStore records one request to a remote store; wire it to
// s3.Options.Observe.
func (m *Metrics) ObserveStore(op string, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.storeOps.WithLabelValues(op, result).Observe(d.Seconds())
}

// ObserveFetch records one upstream fetch; wire it to cache.Options.OnFetch.
func (m *Metrics) ObserveFetch(r cache.FetchResult) {
	outcome := fetchOutcome(r.Err)
	m.fetches.WithLabelValues(outcome).Inc()
	m.fetchDuration.WithLabelValues(outcome).Observe(r.Duration.Seconds())
}

func fetchOutcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, cache.ErrNotFound):
		return "not_found"
	case errors.Is(err, store.ErrChecksumMismatch):
		return "checksum_mismatch"
	case errors.Is(err, cache.ErrUpstreamUnavailable):
		return "unavailable"
	default:
		return "error"
	}
}

// observe records one finished request.
func (m *Metrics) observe(r *http.Request, status int, bytes int64, d time.Duration, cacheOutcome string) {
	route := routeOf(r.URL.Path)
	s := m.hit
	if route != "archive" || r.Method != http.MethodGet || status != http.StatusOK || cacheOutcome != string(cache.OutcomeHit) {
		s = m.series(route, r.Method, status, cacheOutcome)
	}
	s.requests.Inc()
	s.bytes.Add(float64(bytes))
	s.duration.Observe(d.Seconds())
	if s.outcome != nil {
		s.outcome.Inc()
	}
}

// series looks up the series of a request by its labels.
func (m *Metrics) series(route, method string, status int, cacheOutcome string) requestSeries {
	s := requestSeries{
		requests: m.requests.WithLabelValues(route, methodLabel(method), strconv.Itoa(status)),
		bytes:    m.responseBytes.WithLabelValues(route),
		duration: m.duration.WithLabelValues(route),
	}
	if cacheOutcome != "bypass" && cacheOutcome != "" {
		s.outcome = m.cacheOutcomes.WithLabelValues(route, cacheOutcome)
	}
	return s
}

func (m *Metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// routeOf maps a path onto a small fixed set of labels, so hostile or
// numerous paths cannot blow up the number of series.
func routeOf(path string) string {
	switch {
	case strings.HasPrefix(path, "/git/index/"):
		return "index"
	case strings.HasPrefix(path, "/user/"):
		return "archive"
	case path == "/symbols.zip":
		return "symbols"
	case strings.HasPrefix(path, "/assets/"):
		return "assets"
	case strings.HasPrefix(path, "/api/v0/"):
		return "api"
	case path == "/healthz", path == "/readyz", path == "/metrics":
		return strings.TrimPrefix(path, "/")
	}
	return "other"
}

func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}
