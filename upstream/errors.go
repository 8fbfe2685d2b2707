package upstream

import "errors"

// Errors Fetcher.Fetch and OfflineTransport return, always wrapped with %w
// so callers test them with errors.Is. They are declared here, below the
// pipeline: package cache refers to them (cache.ErrUpstreamUnavailable is
// ErrUnavailable), never the other way round.
var (
	// ErrNotFound: upstream answered 404 or 410 for the archive. Unlike a
	// version missing from one replica's index, it holds for every
	// replica.
	ErrNotFound = errors.New("upstream has no such archive")

	// ErrUnavailable: upstream cannot be reached (connection refused,
	// timeouts, offline mode); a later try may succeed.
	ErrUnavailable = errors.New("upstream unreachable")

	// ErrOffline: upstream is not asked because the registry is offline by
	// choice (serve --offline). It comes wrapped with ErrUnavailable; it
	// says that waiting will not help, mirroring will.
	ErrOffline = errors.New("offline mode")

	// ErrBadAnswer: upstream answered, but not with a usable archive (5xx
	// after retries, an unexpected status, a body cut short, too large).
	ErrBadAnswer = errors.New("upstream error")
)
