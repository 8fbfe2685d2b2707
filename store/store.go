// Package store is the contract every archive backend meets (local disk
// today, an S3-compatible object store next) and the one way bytes enter a
// backend: PutVerified, which hashes while it copies and commits only an
// archive whose SHA-256 is the one the index gives. Backends never verify;
// they keep bytes and the checksum they were committed with.
package store

import (
	"context"
	"io"
	"time"

	"moonbit-registry/module"
)

// Store keeps verified package archives, one per module version.
//
// A backend never exposes a partly written archive: what Create's Writer
// receives becomes visible all at once at Commit, or never. Concurrent
// writers of one archive (they carry the same verified bytes) end with one
// complete archive. Names that fail the module grammar are refused with an
// error wrapping module.ErrBadName.
type Store interface {
	// Open returns the archive for reading; a missing one is an error
	// wrapping ErrNotExist. The caller closes the Object. Objects of
	// backends that can seek (local files) also implement io.Seeker, which
	// Range requests and sendfile use; seeking is not required.
	Open(ctx context.Context, mv module.Version) (Object, error)

	// Create starts writing mv's archive. Nothing is visible until the
	// Writer's Commit; Abort discards what was written.
	Create(ctx context.Context, mv module.Version, meta Meta) (Writer, error)

	// Delete removes an archive; a missing one is an error wrapping
	// ErrNotExist.
	Delete(ctx context.Context, mv module.Version) error

	// Walk calls fn for every archive, in no particular order, until fn
	// returns an error (which Walk returns) or ctx ends. Whatever is not an
	// archive (temporary files, strays, checksum records) is skipped.
	Walk(ctx context.Context, fn func(module.Version) error) error

	// Ping reports whether the backend can take writes now (readiness).
	// It must be cheap and never write an archive.
	Ping(ctx context.Context) error
}

// Meta is what Create is told before the bytes arrive.
type Meta struct {
	// SHA256 is the archive's checksum, lowercase hex, already compared by
	// the caller (see PutVerified) before it commits; the backend keeps it
	// with the archive and reports it in Info.
	SHA256 string
	// Size is the archive's length in bytes, or -1 when not known in
	// advance. A backend may refuse a commit of any other length.
	Size int64
}

// Writer receives one archive's bytes.
type Writer interface {
	io.Writer
	// Commit publishes the archive. After an error nothing was published
	// (or, where the backend cannot tell, the archive that is visible is
	// complete).
	Commit(ctx context.Context) error
	// Abort discards everything written; after Commit it does nothing.
	Abort() error
}

// Info describes a stored archive.
type Info struct {
	Size    int64
	ModTime time.Time
	// SHA256 is the checksum the archive was committed with; "" for
	// archives a backend holds without one (stored before checksums were
	// kept).
	SHA256 string
}

// Object is a stored archive opened for reading.
type Object interface {
	io.ReadCloser
	Info() Info
}

// Usage is what a backend that tracks its size reports (the local store
// with a size limit does): an optional capability, not part of Store.
type Usage struct {
	Bytes     int64 // bytes of archives
	Files     int64 // archives
	Evictions int64 // archives evicted to honour a size limit so far
	InUse     int64 // archives open, being written or held right now
}
