package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"moonbit-registry/cache"
	"moonbit-registry/module"
	"moonbit-registry/store"
	"moonbit-registry/upstream"
)

// DefaultMaxBodyBytes is PassthroughOptions.MaxBodyBytes's default (and
// cache.max_passthrough_size's).
const DefaultMaxBodyBytes = 1 << 30

// PassthroughOptions configures NewPassthrough.
type PassthroughOptions struct {
	// DownloadURL is upstream for /symbols.zip; default
	// upstream.DefaultDownloadURL.
	DownloadURL string
	// APIURL is upstream for /assets/... and /api/v0/...; default
	// upstream.DefaultAPIURL.
	APIURL string
	// Transport carries the upstream requests; it should be a
	// *upstream.CachingTransport, so upstream's ETag and Cache-Control are
	// honoured and a stored copy is served while upstream is down.
	// Required.
	Transport http.RoundTripper
	// Bodies keeps the bodies of /symbols.zip and /assets/ (which can be
	// large) on disk; they never go through Transport. Nil: they stream
	// through without being kept.
	Bodies store.Bodies
	// Direct carries the upstream requests for Bodies (no HTTP cache in
	// between); nil means upstream.NewTransport().
	Direct http.RoundTripper
	// MaxBodyBytes is the largest body Bodies keeps; larger ones are
	// passed on without being kept. Default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// UserAgent is sent upstream; default upstream.DefaultUserAgent.
	UserAgent string
	// Timeout bounds one upstream exchange, body included; default
	// upstream.DefaultTimeout.
	Timeout time.Duration
	// NotFoundTTL is how long an upstream 404 is remembered; 0 means
	// DefaultNotFoundTTL, negative never.
	NotFoundTTL time.Duration
	// Catalog, if set, answers search and module metadata from the local
	// index when upstream cannot.
	Catalog Catalog
	// LocalOwners are the owners whose modules upstream does not serve
	// here (private ones, those of other sources): their metadata, and
	// search and the module list (which must show them), always come from
	// the Catalog.
	LocalOwners []string
	Logger      zerolog.Logger
}

// NewPassthrough returns the handler for /symbols.zip, /assets/, /api/v0/
// and any other path under the download base that moon may ask for: GET
// and HEAD only, forwarded to upstream, answers kept for when upstream is
// down.
func NewPassthrough(opts PassthroughOptions) (http.Handler, error) {
	if opts.Transport == nil {
		return nil, errors.New("passthrough: Transport is required")
	}
	download, err := parseBaseURL(opts.DownloadURL, upstream.DefaultDownloadURL)
	if err != nil {
		return nil, err
	}
	api, err := parseBaseURL(opts.APIURL, upstream.DefaultAPIURL)
	if err != nil {
		return nil, err
	}
	direct := opts.Direct
	if direct == nil {
		direct = upstream.NewTransport()
	}
	h := &passthrough{
		download:  download,
		api:       api,
		client:    &http.Client{Transport: opts.Transport}, // follows redirects, each hop cached
		direct:    &http.Client{Transport: direct},
		bodies:    opts.Bodies,
		maxBody:   cmp.Or(opts.MaxBodyBytes, DefaultMaxBodyBytes),
		userAgent: opts.UserAgent,
		timeout:   opts.Timeout,
		catalog:   opts.Catalog,
		local:     slices.Clone(opts.LocalOwners),
		log:       opts.Logger,
	}
	ttl := cmp.Or(opts.NotFoundTTL, DefaultNotFoundTTL)
	h.notFound = newNotFoundCache(max(ttl, 0))
	if h.userAgent == "" {
		h.userAgent = upstream.DefaultUserAgent
	}
	if h.timeout <= 0 {
		h.timeout = upstream.DefaultTimeout
	}
	return h, nil
}

func parseBaseURL(s, def string) (*url.URL, error) {
	s = cmp.Or(s, def)
	u, err := module.ParseBaseURL(s)
	if err != nil {
		return nil, fmt.Errorf("passthrough: upstream URL %q: %w", s, err)
	}
	return u, nil
}

type passthrough struct {
	download  *url.URL
	api       *url.URL
	client    *http.Client // API answers, through the HTTP cache
	direct    *http.Client // bodies kept in bodies
	bodies    store.Bodies
	maxBody   int64
	userAgent string
	timeout   time.Duration
	notFound  *notFoundCache
	catalog   Catalog
	local     []string // PassthroughOptions.LocalOwners
	log       zerolog.Logger
}

// localFirst reports whether an API request is answered from the local
// index without asking upstream (see PassthroughOptions.LocalOwners).
func (p *passthrough) localFirst(route apiRoute, path string) bool {
	if len(p.local) == 0 || p.catalog == nil {
		return false
	}
	switch route {
	case apiSearch, apiModules:
		return true
	case apiModule, apiManifest, apiUser:
		owner := apiOwner(route, path)
		return slices.ContainsFunc(p.local, func(o string) bool { return strings.EqualFold(o, owner) })
	}
	return false
}

// passthroughOrUnavailable lets the server route to a passthrough that was
// not configured: such requests get 503 instead of a nil-handler panic.
func passthroughOrUnavailable(h http.Handler) http.Handler {
	if h != nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream pass-through is not configured", http.StatusServiceUnavailable)
	})
}

func (p *passthrough) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !safePath(r.URL.Path) {
		http.Error(w, "invalid path", http.StatusBadRequest)
		return
	}
	target, ok := p.upstreamURL(r)
	if !ok {
		http.NotFound(w, r)
		return
	}
	route := classifyAPI(r.URL.Path)
	if p.localFirst(route, r.URL.Path) {
		// Never upstream's answer, even when the local index cannot
		// answer now: it could show a namesake of a private module.
		if !serveLocal(w, r, p.catalog, route, "this registry serves it itself") {
			w.Header().Set("Retry-After", "5")
			http.Error(w, "the local index cannot answer right now (see /readyz); try again", http.StatusServiceUnavailable)
		}
		noteCache(r, "local")
		return
	}
	if p.notFound.known(target) {
		p.answerNotFound(w, r)
		return
	}
	if !strings.HasPrefix(r.URL.Path, "/api/v0/") {
		p.serveBody(w, r, target) // symbols.zip, assets and the rest: bodies that can be large
		return
	}

	timeout := p.timeout
	if p.catalog != nil {
		// The local index answers when upstream does not; a client should
		// not wait a whole upstream timeout for that.
		timeout = min(timeout, apiTimeout)
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	ctx, tracker := upstream.TrackOutcome(ctx)
	req, err := p.upstreamRequest(ctx, r, target)
	if err != nil {
		http.Error(w, "invalid path", http.StatusBadRequest)
		return
	}
	done, err := p.notFound.ask(ctx, target)
	if err != nil {
		p.answerAskFailed(w, r, err)
		return
	}
	resp, err := p.client.Do(req)
	served := tracker.Outcome(resp)
	status := 0 // only upstream's own answer counts, not a stored one
	if served == upstream.ServedUpstream {
		status = upstreamStatus(resp, err)
	}
	done(status)
	// Upstream could not answer: the local index can, for what it knows.
	upstreamDown := err != nil || resp.StatusCode >= 500
	if upstreamDown && r.Context().Err() == nil {
		if serveLocal(w, r, p.catalog, route, "upstream is unreachable") {
			if resp != nil {
				resp.Body.Close()
			}
			noteCache(r, "local")
			return
		}
	}
	if err != nil {
		p.failUpstream(w, r, target, err)
		return
	}
	defer resp.Body.Close()
	noteCache(r, string(passOutcome(served)))

	hdr := w.Header()
	copyEndToEndHeaders(hdr, resp.Header)
	if resp.ContentLength >= 0 {
		hdr.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}

	if resp.StatusCode == http.StatusOK && etagMatches(r.Header.Get("If-None-Match"), resp.Header.Get("ETag")) {
		for _, k := range []string{"Content-Type", "Content-Length", "Content-Encoding"} {
			hdr.Del(k)
		}
		w.WriteHeader(http.StatusNotModified)
		p.fillCache(resp.Body, target)
		return
	}
	w.WriteHeader(clientStatus(resp.StatusCode))
	if r.Method == http.MethodHead {
		p.fillCache(resp.Body, target)
		return
	}
	if _, err := io.Copy(w, resp.Body); err != nil && r.Context().Err() == nil {
		p.log.Warn().Err(err).Str("upstream", target).Msg("pass-through body cut short")
	}
}

// upstreamRequest is the request to upstream for r: always a GET, also for
// HEAD (one stored entry serves both, and a HEAD fills the cache for the
// GET that usually follows), with our User-Agent and the client's Accept.
// The client's If-None-Match and Range are deliberately not sent: the
// cache is shared, so it must hold the full current response, and the
// client's condition is answered from that.
func (p *passthrough) upstreamRequest(ctx context.Context, r *http.Request, target string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", p.userAgent)
	if a := r.Header.Get("Accept"); a != "" {
		req.Header.Set("Accept", a)
	}
	return req, nil
}

// apiTimeout bounds an API request to upstream when the local index can
// answer instead.
const apiTimeout = 10 * time.Second

// clientStatus is the status passed on for upstream's: a 5xx moon would not
// retry (501, 505, 507, ...) becomes 502, which it does.
func clientStatus(upstreamStatus int) int {
	switch {
	case upstreamStatus < 500:
		return upstreamStatus
	case upstreamStatus == http.StatusInternalServerError, upstreamStatus == http.StatusBadGateway,
		upstreamStatus == http.StatusServiceUnavailable, upstreamStatus == http.StatusGatewayTimeout:
		return upstreamStatus
	}
	return http.StatusBadGateway
}

// upstreamStatus is upstream's status, 0 for no answer.
func upstreamStatus(resp *http.Response, err error) int {
	if err != nil || resp == nil {
		return 0
	}
	return resp.StatusCode
}

// answerNotFound answers a target upstream said 404 for a moment ago.
func (p *passthrough) answerNotFound(w http.ResponseWriter, r *http.Request) {
	noteCache(r, "not_found")
	http.Error(w, fmt.Sprintf("%s: not found upstream (remembered for up to %s)", r.URL.Path, p.notFound.ttl), http.StatusNotFound)
}

// answerAskFailed answers when waiting for another request's upstream
// status ended: with 404 when that was upstream's answer.
func (p *passthrough) answerAskFailed(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, errKnownNotFound):
		p.answerNotFound(w, r)
	case r.Context().Err() != nil:
		w.WriteHeader(statusClientClosed) // the client left
	default: // the upstream timeout ran out while waiting
		http.Error(w, fmt.Sprintf("upstream did not answer for %s in time; try again later", r.URL.Path), http.StatusGatewayTimeout)
	}
}

// passOutcome is the cache outcome the access log and the metrics give an
// answer of the caching transport.
func passOutcome(s upstream.Served) cache.Outcome {
	switch s {
	case upstream.ServedStored:
		return cache.OutcomeHit
	case upstream.ServedStale:
		return cache.OutcomeStale
	}
	return cache.OutcomeMiss
}

// failUpstream answers a request upstream did not answer and that has no
// stored copy.
func (p *passthrough) failUpstream(w http.ResponseWriter, r *http.Request, target string, err error) {
	noteCache(r, string(cache.OutcomeMiss))
	if r.Context().Err() != nil {
		w.WriteHeader(statusClientClosed)
		return
	}
	status := statusOf(upstreamFailure(err))
	p.log.Warn().Err(err).Str("upstream", target).Int("status", status).Msg("pass-through failed and nothing cached")
	// The cause names upstream's addresses: the log has it, clients get
	// what they can act on.
	msg := "upstream unreachable and no cached copy of %s; try again later"
	switch {
	case errors.Is(err, cache.ErrOffline):
		msg = "no cached copy of %s, and this registry is offline by choice (serve --offline): " +
			"`moonbit-registry mirror` fetches symbols.zip where upstream is reachable; other paths are kept once fetched online"
	case status == http.StatusBadGateway:
		msg = "upstream sent no usable answer and there is no cached copy of %s; try again later"
	}
	http.Error(w, fmt.Sprintf(msg, r.URL.Path), status)
}

// fillCache reads the rest of an upstream body the client does not need:
// the caching transport stores a response only once its body has been read
// to the end.
func (p *passthrough) fillCache(body io.Reader, target string) {
	if _, err := io.Copy(io.Discard, body); err != nil {
		p.log.Debug().Err(err).Str("upstream", target).Msg("could not read body to cache it")
	}
}

// upstreamURL maps the request onto the upstream that serves it: assets
// and the API on the API base, everything else (symbols.zip, and paths
// newer clients may ask for under their download base) on the download
// base. The query string is kept only for the API (search); elsewhere it
// would only multiply cache entries for the same content.
func (p *passthrough) upstreamURL(r *http.Request) (string, bool) {
	path := r.URL.EscapedPath()
	switch {
	case path == "/" || path == "" || strings.HasPrefix(path, "/git/"):
		return "", false // the web root, and git paths: only the index is served there
	case strings.HasPrefix(path, "/assets/"):
		return p.api.String() + path, true
	case strings.HasPrefix(path, "/api/v0/"):
		u := p.api.String() + path
		if r.URL.RawQuery != "" {
			u += "?" + r.URL.RawQuery
		}
		return u, true
	}
	return p.download.String() + path, true
}

// safePath rejects what must never reach upstream or a cache key: NUL and
// other control bytes, backslashes, and "." or ".." segments (also when
// they arrived percent-encoded, since path is the decoded form).
func safePath(path string) bool {
	for i := 0; i < len(path); i++ {
		if path[i] < 0x20 || path[i] == 0x7f || path[i] == '\\' {
			return false
		}
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// skipHeader reports whether a response header must not be passed on:
// hop-by-hop headers describe one connection, not the response (RFC 9110
// section 7.6.1); X-From-Cache and X-Varied-* are httpcache's bookkeeping;
// Set-Cookie must never be replayed from a shared cache to other clients;
// Content-Length is set from the response itself.
func skipHeader(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"X-From-Cache", "Set-Cookie", "Content-Length":
		return true
	}
	return strings.HasPrefix(k, "X-Varied-")
}

func copyEndToEndHeaders(dst, src http.Header) {
	// Headers named in Connection are hop-by-hop too.
	named := map[string]bool{}
	for _, v := range src.Values("Connection") {
		for _, k := range strings.Split(v, ",") {
			if k = strings.TrimSpace(k); k != "" {
				named[http.CanonicalHeaderKey(k)] = true
			}
		}
	}
	for k, vs := range src {
		if skipHeader(k) || named[k] {
			continue
		}
		dst[k] = append([]string(nil), vs...)
	}
}

// etagMatches is If-None-Match's weak comparison (RFC 9110 section
// 13.1.2): any listed tag equal to etag, ignoring W/, or "*".
func etagMatches(ifNoneMatch, etag string) bool {
	if ifNoneMatch == "" || etag == "" {
		return false
	}
	etag = strings.TrimPrefix(etag, "W/")
	for _, t := range strings.Split(ifNoneMatch, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}
