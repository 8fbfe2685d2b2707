package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"moonbit-registry/module"
)

// maxBackoff caps the wait between attempts, Retry-After included.
const maxBackoff = 30 * time.Second

// NewUpstreamTransport returns the transport used for upstream requests
// when none is given: the default one (proxy settings from the
// environment) plus a bound on how long upstream may take to start
// answering, so a hung upstream is an error rather than a stuck request.
func NewUpstreamTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = 60 * time.Second
	t.MaxIdleConnsPerHost = DefaultMaxConcurrentFetches
	return t
}

// ArchiveURL is where upstream serves mv: each path segment escaped, and
// '+' (semver build metadata) escaped too, since some servers read a bare
// '+' in a path as a space.
func (c *Cache) ArchiveURL(mv module.Version) string {
	segs := strings.Split(mv.RelPath(), "/")
	for i, s := range segs {
		segs[i] = strings.ReplaceAll(url.PathEscape(s), "+", "%2B")
	}
	return c.base.String() + "/user/" + strings.Join(segs, "/")
}

// download fetches mv into the store, retrying transient failures with
// exponential backoff. ctx is the detached fetch context.
func (c *Cache) download(ctx context.Context, mv module.Version, sum string) (int64, error) {
	u := c.ArchiveURL(mv)
	for attempt := 0; ; attempt++ {
		n, wait, err := c.attemptOnce(ctx, mv, u, sum)
		if err == nil {
			return n, nil
		}
		if wait < 0 || attempt >= c.retries || ctx.Err() != nil {
			return 0, err
		}
		if wait == 0 {
			wait = c.backoffFor(attempt)
		}
		c.log.Warn().Err(err).Str("archive", mv.String()).Int("attempt", attempt+1).
			Dur("retry_in", wait).Msg("archive fetch attempt failed, retrying")
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, fmt.Errorf("%w (gave up retrying: %w)", err, ctx.Err())
		}
	}
}

// backoffFor is RetryBackoff doubled per attempt, capped, with jitter so
// that many clients failing together do not retry in lockstep.
func (c *Cache) backoffFor(attempt int) time.Duration {
	d := c.backoff << min(attempt, 16)
	if d <= 0 || d > maxBackoff {
		d = maxBackoff
	}
	return d/2 + rand.N(d/2+1)
}

// attemptOnce makes one upstream request. wait says what to do on error:
// negative means do not retry, zero means retry after the usual backoff,
// positive means retry after that long (upstream's Retry-After).
func (c *Cache) attemptOnce(ctx context.Context, mv module.Version, u, sum string) (n int64, wait time.Duration, err error) {
	actx, cancel := context.WithTimeout(ctx, c.attempt)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u, nil)
	if err != nil {
		return 0, -1, fmt.Errorf("%w: archive %s: %w", ErrUpstream, mv, err)
	}
	req.Header.Set("User-Agent", c.userAgent)
	c.stats.requests.Add(1)
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: archive %s: %w", ErrUpstreamUnavailable, mv, err)
	}
	defer resp.Body.Close()

	switch code := resp.StatusCode; {
	case code == http.StatusOK:
	case code == http.StatusNotFound || code == http.StatusGone:
		return 0, -1, fmt.Errorf("%w: upstream has no archive %s (HTTP %d)", ErrNotFound, mv, code)
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		drain(resp.Body)
		return 0, retryAfter(resp.Header), fmt.Errorf("%w: archive %s: upstream answered %s", ErrUpstream, mv, resp.Status)
	default:
		return 0, -1, fmt.Errorf("%w: archive %s: upstream answered %s", ErrUpstream, mv, resp.Status)
	}
	if resp.ContentLength > c.maxBytes {
		return 0, -1, fmt.Errorf("%w: archive %s: %d bytes is over the %d byte limit", ErrUpstream, mv, resp.ContentLength, c.maxBytes)
	}

	body := &sourceReader{r: resp.Body, max: c.maxBytes}
	n, err = c.store.Put(actx, mv, body, sum)
	switch {
	case err == nil:
		return n, 0, nil
	case errors.Is(err, ErrChecksumMismatch):
		// Archives never change: the same URL will send the same bytes.
		return 0, -1, err
	case body.err == nil && actx.Err() != nil:
		// The attempt's deadline ended the copy before the body reader saw
		// it: upstream was too slow, not our disk.
		return 0, 0, fmt.Errorf("%w: archive %s: body: %w", ErrUpstreamUnavailable, mv, context.Cause(actx))
	case body.err == nil:
		return 0, -1, fmt.Errorf("store %s: %w", mv, err) // our disk, not upstream
	case errors.Is(body.err, errTooLarge):
		return 0, -1, fmt.Errorf("%w: archive %s: %w", ErrUpstream, mv, body.err)
	case errors.Is(body.err, context.DeadlineExceeded) || isTimeout(body.err):
		return 0, 0, fmt.Errorf("%w: archive %s: body: %w", ErrUpstreamUnavailable, mv, body.err)
	default: // reset or truncated mid-body
		return 0, 0, fmt.Errorf("%w: archive %s: body cut short: %w", ErrUpstream, mv, body.err)
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
