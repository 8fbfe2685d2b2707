package upstream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/gregjones/httpcache"
)

// ResponseCache keeps dumped HTTP responses by key (httpcache.Cache);
// disk.ResponseCache keeps them on disk.
type ResponseCache interface {
	Get(key string) ([]byte, bool)
	Set(key string, resp []byte)
	Delete(key string)
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

// NewCachingTransport caches what next (nil: NewTransport()) answers in
// responses.
func NewCachingTransport(responses ResponseCache, next http.RoundTripper) *CachingTransport {
	if next == nil {
		next = NewTransport()
	}
	ht := httpcache.NewTransport(keepCacheable{responses})
	ht.Transport = probingTransport{next: next}
	return &CachingTransport{ht: ht}
}

// keepCacheable stores only what is worth keeping. httpcache would store
// any status that is not marked no-store, 5xx included, and a stored 5xx
// would later be served as if it were content. Only successful and
// permanent-redirect statuses among those cacheable by default (RFC 9110
// section 15.1) are kept: storing 404s too would let any client grow the
// cache without bound by asking for paths that do not exist.
type keepCacheable struct{ ResponseCache }

func (k keepCacheable) Set(key string, resp []byte) {
	if cacheableStatus(resp) {
		k.ResponseCache.Set(key, resp)
	}
}

// cacheableStatus reads the status code from a dumped response's first line
// ("HTTP/1.1 200 OK").
func cacheableStatus(resp []byte) bool {
	line, _, _ := bytes.Cut(resp, []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) < 2 {
		return false
	}
	code, err := strconv.Atoi(fields[1])
	if err != nil {
		return false
	}
	switch code {
	case 200, 203, 204, 300, 301, 308:
		return true
	}
	return false
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
	} else if !HasDirective(cc, staleIfError) {
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

// Served says how a CachingTransport answered a request.
type Served int

const (
	// ServedUpstream: upstream's own answer (nothing was stored, or the
	// stored copy was replaced); also the answer to a failed request.
	ServedUpstream Served = iota
	// ServedStored: the stored copy, fresh or revalidated with a 304.
	ServedStored
	// ServedStale: the stored copy, served because upstream failed.
	ServedStale
)

// String names s for logs and test failures.
func (s Served) String() string {
	switch s {
	case ServedUpstream:
		return "upstream"
	case ServedStored:
		return "stored"
	case ServedStale:
		return "stale"
	}
	return "Served(" + strconv.Itoa(int(s)) + ")"
}

// Outcome classifies resp (nil when the request failed).
func (t *OutcomeTracker) Outcome(resp *http.Response) Served {
	if resp == nil || resp.Header.Get(httpcache.XFromCache) == "" {
		return ServedUpstream
	}
	if t.upstreamFailed.Load() {
		return ServedStale
	}
	return ServedStored
}

// probingTransport sits between httpcache and upstream: it strips the
// stale-if-error directive added above, and records upstream failures for
// the request's OutcomeTracker.
type probingTransport struct {
	next http.RoundTripper
}

func (p probingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if cc := req.Header.Get("Cache-Control"); HasDirective(cc, staleIfError) {
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

// HasDirective reports whether the Cache-Control value cc has the
// directive name.
func HasDirective(cc, name string) bool {
	_, ok := Directive(cc, name)
	return ok
}

// Directive returns the value of the directive name in a Cache-Control
// header value cc ("" for one without a value), and whether it is there.
func Directive(cc, name string) (string, bool) {
	for _, part := range strings.Split(cc, ",") {
		d, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		if strings.EqualFold(d, name) {
			return strings.Trim(v, `"`), true
		}
	}
	return "", false
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
// fails with ErrUnavailable and ErrOffline. Under a CachingTransport it
// makes offline mode serve what is stored (as on any upstream error) and
// nothing else.
type OfflineTransport struct{}

// RoundTrip implements http.RoundTripper.
func (OfflineTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	return nil, fmt.Errorf("%w: %w", ErrUnavailable, ErrOffline)
}

// Authorize returns a transport that sends value as the Authorization
// header of every request through next (nil: NewTransport()) to one of
// hosts (host:port as in a URL), for an upstream that needs credentials;
// requests elsewhere (a redirect to a CDN or a signed URL) go without it.
// Without a value it returns next.
func Authorize(next http.RoundTripper, value string, hosts ...string) http.RoundTripper {
	if value == "" {
		return next
	}
	if next == nil {
		next = NewTransport()
	}
	return authorizing{next: next, value: value, hosts: hosts}
}

type authorizing struct {
	next  http.RoundTripper
	value string
	hosts []string
}

func (a authorizing) RoundTrip(req *http.Request) (*http.Response, error) {
	if !slices.Contains(a.hosts, req.URL.Host) {
		return a.next.RoundTrip(req)
	}
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", a.value)
	return a.next.RoundTrip(r)
}
