package cache

import (
	"context"
	"io"
	"io/fs"

	"moonbit-registry/module"
)

// Store keeps verified package archives. It is the seam for a second backend
// (S3/MinIO) later, so it is kept to what the fetch pipeline, the proxy and a
// future verify command need.
//
// Implementations must never expose a partially written archive: Put either
// makes the complete, verified archive visible at once or leaves nothing.
type Store interface {
	// Open returns the archive for reading. A missing archive is an error
	// wrapping ErrNotExist. The caller closes the Object.
	Open(ctx context.Context, mv module.Version) (Object, error)

	// Put streams r into the store, hashing as it goes, and publishes the
	// archive only if its SHA-256 (lowercase hex) equals expectedSHA256;
	// otherwise it returns a *ChecksumError and stores nothing. Errors from
	// r are returned wrapped with %w, so a caller can recognise its own
	// reader's errors. It returns the number of bytes stored.
	Put(ctx context.Context, mv module.Version, r io.Reader, expectedSHA256 string) (int64, error)

	// Delete removes an archive; a missing one is an error wrapping
	// ErrNotExist.
	Delete(ctx context.Context, mv module.Version) error

	// Walk calls fn for every archive in the store, in no particular order,
	// until fn returns an error (which Walk returns) or ctx ends. Files that
	// are not archives (temporary files, strays) are skipped.
	Walk(ctx context.Context, fn func(module.Version) error) error
}

// Object is a stored archive opened for reading. Seeking, size and
// modification time are what http.ServeContent needs; the local store returns
// an *os.File, so the response body goes out with sendfile.
type Object interface {
	io.ReadSeekCloser
	Stat() (fs.FileInfo, error)
}
