package cache

import (
	"errors"
	"fmt"

	"moonbit-registry/module"
)

// Errors the cache returns, always wrapped with %w so callers test them with
// errors.Is. The proxy maps them to HTTP statuses (see proxy/archive.go).
var (
	// ErrNotExist: the store does not hold the archive. Internal to the
	// store/cache boundary; Get and Ensure fetch instead of returning it.
	ErrNotExist = errors.New("archive not in store")

	// ErrNotFound: the version is not in the index (even after a refresh),
	// or upstream answered 404/410 for it.
	ErrNotFound = errors.New("archive not found")

	// ErrChecksumMismatch: the bytes upstream sent do not hash to the
	// index checksum. Nothing was stored.
	ErrChecksumMismatch = errors.New("archive checksum mismatch")

	// ErrUpstreamUnavailable: the archive is not cached and upstream cannot
	// be reached (offline mode, connection refused, timeouts).
	ErrUpstreamUnavailable = errors.New("upstream unreachable")

	// ErrUpstream: upstream answered, but not with a usable archive (5xx
	// after retries, an unexpected status, a body cut short, too large).
	ErrUpstream = errors.New("upstream error")

	// ErrStoreWrite: the archive store could not write (disk full, file
	// size limit, read-only filesystem). Nothing was stored.
	ErrStoreWrite = errors.New("archive store cannot write")
)

// ChecksumError carries both sums of a failed verification so they can be
// logged; errors.Is(err, ErrChecksumMismatch) holds for it.
type ChecksumError struct {
	Archive  module.Version
	Expected string
	Actual   string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("%v: %s: index says sha256 %s, upstream sent %s",
		ErrChecksumMismatch, e.Archive, e.Expected, e.Actual)
}

func (e *ChecksumError) Unwrap() error { return ErrChecksumMismatch }
