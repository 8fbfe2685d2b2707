package cache

import (
	"errors"
	"fmt"
)

// Errors the pipeline and its Fetcher return, always wrapped with %w so
// callers test them with errors.Is. Store errors (store.ErrWrite,
// store.ErrChecksumMismatch) and module.ErrBadName pass through as they
// are. The proxy maps them to HTTP statuses (see proxy/archive.go).
var (
	// ErrNotFound: the version is not in the index (even after a refresh),
	// or upstream answered 404/410 for it.
	ErrNotFound = errors.New("archive not found")

	// ErrUpstreamNotFound: upstream itself answered 404/410 (it wraps
	// ErrNotFound). Unlike a version missing from one replica's index, it
	// holds for every replica.
	ErrUpstreamNotFound = fmt.Errorf("%w: upstream has no such archive", ErrNotFound)

	// ErrUpstreamUnavailable: the archive is not cached and upstream cannot
	// be reached (offline mode, connection refused, timeouts).
	ErrUpstreamUnavailable = errors.New("upstream unreachable")

	// ErrOffline: upstream is not asked because the registry is offline by
	// choice (serve --offline). It comes wrapped with
	// ErrUpstreamUnavailable; it says that waiting will not help, mirror
	// will.
	ErrOffline = errors.New("offline mode")

	// ErrUpstream: upstream answered, but not with a usable archive (5xx
	// after retries, an unexpected status, a body cut short, too large).
	ErrUpstream = errors.New("upstream error")

	// ErrStreamCut: a Stream ended short because its download failed (a
	// checksum mismatch, a store failure, a retry with other bytes); a
	// response that followed it must be cut, never ended as complete.
	ErrStreamCut = errors.New("the download being streamed failed")
)
