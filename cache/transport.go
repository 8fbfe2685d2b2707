package cache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/gregjones/httpcache"
	"github.com/rs/zerolog"
)

// HTTPCacheOptions configures NewCachingTransport.
type HTTPCacheOptions struct {
	// Dir holds the stored responses, e.g. data/http-cache.
	Dir string
	// Upstream makes the real requests; nil means NewUpstreamTransport().
	Upstream http.RoundTripper
	Logger   zerolog.Logger
}

// CachingTransport is an http.RoundTripper that caches upstream responses
// on disk with RFC 7234 semantics (httpcache): fresh stored responses are
// served without asking upstream, stale ones are revalidated with their
// ETag/Last-Modified, and when upstream fails (connection error or 5xx) a
// stored response is served instead, however old.
//
// Upstream does not send stale-if-error itself, so every request gets a
// "Cache-Control: stale-if-error" directive added: that is what makes
// httpcache fall back to the stored copy. The directive is removed again
// before the request leaves for upstream.
//
// Only whole-response GETs are worth caching here; callers should not send
// Range or conditional headers through it (httpcache drops the stored entry
// on a Range request, and would store a 304 answer to a caller's own
// If-None-Match as if it were the content).
type CachingTransport struct {
	ht *httpcache.Transport
}

// NewCachingTransport opens the response cache in opts.Dir.
func NewCachingTransport(opts HTTPCacheOptions) (*CachingTransport, error) {
	store, err := NewHTTPCache(opts.Dir, opts.Logger)
	if err != nil {
		return nil, err
	}
	up := opts.Upstream
	if up == nil {
		up = NewUpstreamTransport()
	}
	ht := httpcache.NewTransport(store)
	ht.Transport = probingTransport{next: up}
	return &CachingTransport{ht: ht}, nil
}

const staleIfError = "stale-if-error"

// RoundTrip implements http.RoundTripper.
func (t *CachingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.RawQuery != "" {
		// Queries (API searches) are as many as clients care to invent;
		// storing each would grow the cache without bound.
		return t.ht.Transport.RoundTrip(req)
	}
	r := req.Clone(req.Context())
	cc := r.Header.Get("Cache-Control")
	if cc == "" {
		cc = staleIfError
	} else if !hasDirective(cc, staleIfError) {
		cc += ", " + staleIfError
	}
	r.Header.Set("Cache-Control", cc)
	return t.ht.RoundTrip(r)
}

// OutcomeTracker learns how a CachingTransport answered one request.
type OutcomeTracker struct {
	upstreamFailed atomic.Bool
}

type trackerKey struct{}

// TrackOutcome returns a context to send a request with through a
// CachingTransport, and the tracker that will tell how it was served.
func TrackOutcome(ctx context.Context) (context.Context, *OutcomeTracker) {
	t := &OutcomeTracker{}
	return context.WithValue(ctx, trackerKey{}, t), t
}

// Outcome classifies resp: OutcomeHit if it came from the stored copy
// (fresh, or revalidated with a 304), OutcomeStale if the stored copy was
// served because upstream failed, OutcomeMiss if it came from upstream.
func (t *OutcomeTracker) Outcome(resp *http.Response) Outcome {
	if resp == nil || resp.Header.Get(httpcache.XFromCache) == "" {
		return OutcomeMiss
	}
	if t.upstreamFailed.Load() {
		return OutcomeStale
	}
	return OutcomeHit
}

// probingTransport sits between httpcache and upstream: it strips the
// stale-if-error directive added above, and records upstream failures for
// the request's OutcomeTracker.
type probingTransport struct {
	next http.RoundTripper
}

func (p probingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if cc := req.Header.Get("Cache-Control"); hasDirective(cc, staleIfError) {
		req = req.Clone(req.Context())
		if rest := withoutDirective(cc, staleIfError); rest == "" {
			req.Header.Del("Cache-Control")
		} else {
			req.Header.Set("Cache-Control", rest)
		}
	}
	tracker, _ := req.Context().Value(trackerKey{}).(*OutcomeTracker)
	resp, err := p.next.RoundTrip(req)
	if err != nil {
		if tracker != nil {
			tracker.upstreamFailed.Store(true)
		}
		return nil, err
	}
	if resp.StatusCode >= 500 {
		if tracker != nil {
			tracker.upstreamFailed.Store(true)
		}
		// httpcache drops a 5xx response without closing its body when
		// it serves the stored copy instead; buffer the (small) error body
		// so the connection is released either way.
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(b))
		resp.ContentLength = int64(len(b))
		resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
	}
	return resp, nil
}

func hasDirective(cc, name string) bool {
	for _, d := range strings.Split(cc, ",") {
		d, _, _ = strings.Cut(strings.TrimSpace(d), "=")
		if strings.EqualFold(d, name) {
			return true
		}
	}
	return false
}

func withoutDirective(cc, name string) string {
	var keep []string
	for _, d := range strings.Split(cc, ",") {
		d = strings.TrimSpace(d)
		n, _, _ := strings.Cut(d, "=")
		if d != "" && !strings.EqualFold(n, name) {
			keep = append(keep, d)
		}
	}
	return strings.Join(keep, ", ")
}

// OfflineTransport is an upstream that is never contacted: every request
// fails with ErrUpstreamUnavailable. Under a CachingTransport it makes
// offline mode serve what is stored (as on any upstream error) and nothing
// else.
type OfflineTransport struct{}

// RoundTrip implements http.RoundTripper.
func (OfflineTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	return nil, fmt.Errorf("%w: offline mode", ErrUpstreamUnavailable)
}
