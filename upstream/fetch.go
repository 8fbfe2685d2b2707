package upstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"moonbit-registry/module"
)

// maxBackoff caps the wait between attempts, Retry-After included.
const maxBackoff = 30 * time.Second

// Defaults for FetcherOptions fields left zero.
const (
	DefaultTimeout               = time.Minute
	DefaultRetries               = 3
	DefaultRetryBackoff          = 500 * time.Millisecond
	DefaultMaxArchiveBytes       = 1 << 30
	DefaultMaxIdleConnsPerHost   = 16
	DefaultResponseHeaderTimeout = 60 * time.Second
)

// FetcherOptions configures a Fetcher. Zero values take the defaults above.
type FetcherOptions struct {
	// DownloadURL is the upstream archive base: archives are fetched from
	// <DownloadURL>/user/<owner>/<rest>/<version>.zip. Default
	// DefaultDownloadURL.
	DownloadURL string
	// UserAgent is sent upstream; default DefaultUserAgent.
	UserAgent string
	// Client makes the requests; nil means one over NewTransport(). Its own
	// Timeout should be zero: each attempt is bounded by Timeout.
	Client *http.Client
	// Timeout bounds one attempt, body included.
	Timeout time.Duration
	// Retries is how many times a failed attempt is retried (5xx, 408,
	// 429, connection errors, bodies cut short); never on 404. Zero means
	// DefaultRetries; negative means none.
	Retries int
	// RetryBackoff is the wait before the first retry; it doubles for each
	// further one (with jitter), and upstream's Retry-After overrides it.
	RetryBackoff time.Duration
	// MaxArchiveBytes rejects archives larger than this, so a misbehaving
	// upstream cannot fill the disk.
	MaxArchiveBytes int64
	// Authorization, if set, is sent as the Authorization header (a
	// source that needs credentials). Go drops it on a redirect to
	// another host.
	Authorization string
	Logger        zerolog.Logger
}

// Fetcher downloads archives over HTTP; it is the Fetcher package cache
// uses for misses.
type Fetcher struct {
	base      *url.URL
	userAgent string
	client    *http.Client
	attempt   time.Duration
	retries   int
	backoff   time.Duration
	maxBytes  int64
	auth      string
	log       zerolog.Logger
	requests  atomic.Int64
}

// NewFetcher checks opts and builds a Fetcher.
func NewFetcher(opts FetcherOptions) (*Fetcher, error) {
	base := cmp.Or(opts.DownloadURL, DefaultDownloadURL)
	u, err := module.ParseBaseURL(base)
	if err != nil {
		return nil, fmt.Errorf("download URL %q: %w", base, err)
	}
	f := &Fetcher{
		base:      u,
		userAgent: cmp.Or(opts.UserAgent, DefaultUserAgent),
		client:    opts.Client,
		attempt:   cmp.Or(opts.Timeout, DefaultTimeout),
		retries:   cmp.Or(opts.Retries, DefaultRetries),
		backoff:   cmp.Or(opts.RetryBackoff, DefaultRetryBackoff),
		maxBytes:  cmp.Or(opts.MaxArchiveBytes, DefaultMaxArchiveBytes),
		auth:      opts.Authorization,
		log:       opts.Logger,
	}
	if f.retries < 0 {
		f.retries = 0
	}
	if f.client == nil {
		f.client = &http.Client{Transport: NewTransport()}
	}
	return f, nil
}

// Attempts is the number of HTTP requests made so far, retries included.
func (f *Fetcher) Attempts() int64 { return f.requests.Load() }

// NewTransport returns the transport used for upstream requests
// when none is given: the default one (proxy settings from the
// environment) plus a bound on how long upstream may take to start
// answering, so a hung upstream is an error rather than a stuck request.
func NewTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	t.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	return t
}

// ArchiveURL is where upstream serves mv: each path segment escaped, and
// '+' (semver build metadata) escaped too, since some servers read a bare
// '+' in a path as a space.
func (f *Fetcher) ArchiveURL(mv module.Version) string {
	segs := strings.Split(mv.RelPath(), "/")
	for i, s := range segs {
		segs[i] = strings.ReplaceAll(url.PathEscape(s), "+", "%2B")
	}
	return f.base.String() + "/user/" + strings.Join(segs, "/")
}

// Fetch requests mv and hands each attempt's body to sink, retrying
// transient failures (5xx, 408, 429, connection errors, timeouts, bodies
// cut short) with exponential backoff or after upstream's Retry-After. A
// body cut short is resumed from where it broke when upstream allows (see
// resumingBody); a resumed request counts as a retry, so a fetch makes at
// most 1 + Retries requests. An error sink returns that did not come from
// reading the body (a checksum mismatch, the store) ends the fetch as it
// is. Errors wrap ErrNotFound, ErrBadAnswer or ErrUnavailable otherwise.
func (f *Fetcher) Fetch(ctx context.Context, mv module.Version, sink func(ctx context.Context, body io.Reader, size int64) error) error {
	u := f.ArchiveURL(mv)
	retries := f.retries // left: attempts and resumes take from it
	for attempt := 0; ; attempt++ {
		wait, err := f.attemptOnce(ctx, mv, u, &retries, sink)
		if err == nil {
			return nil
		}
		if wait < 0 || retries <= 0 || ctx.Err() != nil {
			return err
		}
		retries--
		if wait == 0 {
			wait = f.backoffFor(attempt)
		}
		f.log.Warn().Err(err).Str("archive", mv.String()).Int("attempt", attempt+1).
			Dur("retry_in_ms", wait).Msg("archive fetch attempt failed, retrying")
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (gave up retrying: %w)", err, ctx.Err())
		}
	}
}

// backoffFor is RetryBackoff doubled per attempt, capped, with jitter so
// that many clients failing together do not retry in lockstep.
func (f *Fetcher) backoffFor(attempt int) time.Duration {
	d := f.backoff << min(attempt, 16)
	if d <= 0 || d > maxBackoff {
		d = maxBackoff
	}
	return d/2 + rand.N(d/2+1)
}

// attemptOnce makes one upstream request. wait says what to do on error:
// negative means do not retry, zero means retry after the usual backoff,
// positive means retry after that long (upstream's Retry-After).
func (f *Fetcher) attemptOnce(ctx context.Context, mv module.Version, u string, retries *int, sink func(context.Context, io.Reader, int64) error) (wait time.Duration, err error) {
	actx, cancel := context.WithTimeout(ctx, f.attempt)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u, nil)
	if err != nil {
		return -1, fmt.Errorf("%w: archive %s: %w", ErrBadAnswer, mv, err)
	}
	req.Header.Set("User-Agent", f.userAgent)
	if f.auth != "" {
		req.Header.Set("Authorization", f.auth)
	}
	f.requests.Add(1)
	resp, err := f.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: archive %s: %w", ErrUnavailable, mv, err)
	}
	defer resp.Body.Close()

	switch code := resp.StatusCode; {
	case code == http.StatusOK:
	case code == http.StatusNotFound || code == http.StatusGone:
		return -1, fmt.Errorf("%w: %s (HTTP %d)", ErrNotFound, mv, code)
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		drain(resp.Body)
		return retryAfter(resp.Header), fmt.Errorf("%w: archive %s: upstream answered %s", ErrBadAnswer, mv, resp.Status)
	default:
		return -1, fmt.Errorf("%w: archive %s: upstream answered %s", ErrBadAnswer, mv, resp.Status)
	}
	if resp.ContentLength > f.maxBytes {
		return -1, fmt.Errorf("%w: archive %s: %d bytes is over the %d byte limit", ErrBadAnswer, mv, resp.ContentLength, f.maxBytes)
	}

	rest := newResumingBody(actx, f, u, resp, retries) // a cut costs the rest, not the whole
	defer rest.Close()
	body := &sourceReader{r: rest, max: f.maxBytes}
	err = sink(actx, body, resp.ContentLength)
	switch {
	case err == nil:
		return 0, nil
	case body.err == nil && actx.Err() != nil:
		// The attempt's deadline ended the copy before the body reader saw
		// it: upstream was too slow, not our disk.
		return 0, fmt.Errorf("%w: archive %s: body: %w", ErrUnavailable, mv, context.Cause(actx))
	case body.err == nil:
		// The sink's own verdict (checksum mismatch, store failure):
		// the same URL would send the same bytes.
		return -1, err
	case errors.Is(body.err, errTooLarge):
		return -1, fmt.Errorf("%w: archive %s: %w", ErrBadAnswer, mv, body.err)
	case errors.Is(body.err, context.DeadlineExceeded) || isTimeout(body.err):
		return 0, fmt.Errorf("%w: archive %s: body: %w", ErrUnavailable, mv, body.err)
	default: // reset or truncated mid-body
		return 0, fmt.Errorf("%w: archive %s: body cut short: %w", ErrBadAnswer, mv, body.err)
	}
}

var errTooLarge = errors.New("archive exceeds the size limit")

// sourceReader remembers the upstream body's read error, so a failed Put can
// be blamed on upstream (retry) or on the store (do not), and enforces the
// size limit while streaming.
type sourceReader struct {
	r    io.Reader
	read int64
	max  int64
	err  error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.read += int64(n)
	if s.read > s.max {
		s.err = errTooLarge
		return 0, s.err
	}
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// retryAfter reads a Retry-After in seconds (the form upstreams use for
// 429/503), capped at maxBackoff; 0 if absent or unreadable.
func retryAfter(h http.Header) time.Duration {
	s, err := strconv.Atoi(strings.TrimSpace(h.Get("Retry-After")))
	if err != nil || s <= 0 {
		return 0
	}
	return min(time.Duration(s)*time.Second, maxBackoff)
}

// drain reads a little of an error body so the connection can be reused.
func drain(r io.Reader) {
	io.Copy(io.Discard, io.LimitReader(r, 64<<10))
}

// Router fetches each archive from the source that serves its owner
// (ByOwner), others from Default: archives come from where their index
// line came from. Like Fetcher, it is a Fetcher for package cache.
type Router struct {
	ByOwner map[string]*Fetcher
	Default *Fetcher
}

// Fetch fetches mv from its owner's source, as Fetcher.Fetch does.
func (r Router) Fetch(ctx context.Context, mv module.Version, sink func(ctx context.Context, body io.Reader, size int64) error) error {
	if f, ok := r.ByOwner[module.Owner(mv.Module)]; ok {
		return f.Fetch(ctx, mv, sink)
	}
	return r.Default.Fetch(ctx, mv, sink)
}

// Attempts is the number of HTTP requests of every source.
func (r Router) Attempts() int64 {
	n := r.Default.Attempts()
	seen := map[*Fetcher]bool{}
	for _, f := range r.ByOwner {
		if !seen[f] {
			seen[f] = true
			n += f.Attempts()
		}
	}
	return n
}
