package store

import (
	"errors"
	"fmt"

	"moonbit-registry/module"
)

// Errors of stores and PutVerified, always wrapped with %w so callers test
// them with errors.Is.
var (
	// ErrNotExist: the store does not hold the archive.
	ErrNotExist = errors.New("archive not in store")

	// ErrWrite: the store could not write (disk full, file size limit,
	// read-only filesystem, object store refusing). Nothing was stored.
	ErrWrite = errors.New("archive store cannot write")

	// ErrUnavailable: a remote store did not answer (or answered with an
	// error of its own); a retry may succeed.
	ErrUnavailable = errors.New("archive store unavailable")

	// ErrChecksumMismatch: the bytes do not hash to the expected checksum.
	// Nothing was stored.
	ErrChecksumMismatch = errors.New("archive checksum mismatch")
)

// ChecksumError carries both sums of a failed verification so they can be
// logged; errors.Is(err, ErrChecksumMismatch) holds for it.
type ChecksumError struct {
	Archive  module.Version
	Expected string
	Actual   string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("%v: %s: index says sha256 %s, the bytes received hash to %s",
		ErrChecksumMismatch, e.Archive, e.Expected, e.Actual)
}

func (e *ChecksumError) Unwrap() error { return ErrChecksumMismatch }
