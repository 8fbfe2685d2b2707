package cache

import (
	"errors"
	"fmt"

	"moonbit-registry/upstream"
)

// Errors the pipeline returns, always wrapped with %w so callers test them
// with errors.Is. Those about upstream are package upstream's values under
// the names the pipeline's callers use, so an error a Fetcher wraps with
// upstream's value is found by either name. Store errors
// (store.ErrWrite, store.ErrChecksumMismatch) and module.ErrBadName pass
// through as they are. The proxy maps them to HTTP statuses (see
// proxy/status.go).
var (
	// ErrNotFound: the version is not in the index (even after a refresh),
	// or upstream answered 404/410 for it.
	ErrNotFound = errors.New("archive not found")

	// ErrUpstreamNotFound: upstream itself answered 404/410. It wraps
	// ErrNotFound and upstream.ErrNotFound; a Fetcher's error that wraps
	// only upstream.ErrNotFound comes out of the pipeline wrapping this
	// one. Unlike a version missing from one replica's index, it holds for
	// every replica.
	ErrUpstreamNotFound = fmt.Errorf("%w: %w", ErrNotFound, upstream.ErrNotFound)

	// ErrUpstreamUnavailable (upstream.ErrUnavailable): the archive is not
	// cached and upstream cannot be reached (offline mode, connection
	// refused, timeouts).
	ErrUpstreamUnavailable = upstream.ErrUnavailable

	// ErrOffline (upstream.ErrOffline): upstream is not asked because the
	// registry is offline by choice (serve --offline). It comes wrapped
	// with ErrUpstreamUnavailable; it says that waiting will not help,
	// mirror will.
	ErrOffline = upstream.ErrOffline

	// ErrUpstream (upstream.ErrBadAnswer): upstream answered, but not with
	// a usable archive (5xx after retries, an unexpected status, a body
	// cut short, too large).
	ErrUpstream = upstream.ErrBadAnswer

	// ErrStreamCut: a Stream ended short because its download failed (a
	// checksum mismatch, a store failure, a retry with other bytes); a
	// response that followed it must be cut, never ended as complete.
	ErrStreamCut = errors.New("the download being streamed failed")
)

// fetchError is a Fetcher's error in the pipeline's terms: upstream's
// not-found becomes ErrUpstreamNotFound, so ErrNotFound too.
func fetchError(err error) error {
	if errors.Is(err, upstream.ErrNotFound) && !errors.Is(err, ErrUpstreamNotFound) {
		return upstreamNotFound{err}
	}
	return err
}

// upstreamNotFound wraps ErrUpstreamNotFound and a Fetcher's error, and
// reads as the Fetcher's error after ErrNotFound's text ("archive not
// found: upstream has no such archive: ...").
type upstreamNotFound struct{ err error }

func (e upstreamNotFound) Error() string   { return ErrNotFound.Error() + ": " + e.err.Error() }
func (e upstreamNotFound) Unwrap() []error { return []error{ErrUpstreamNotFound, e.err} }
