package store

import (
	"io"
	"time"
)

// Bodies keep the pass-through's answers that can be large (symbols.zip,
// prebuilt assets) under keys (their upstream URLs), each with what
// BodyMeta says of it. The disk store's Bodies is one.
type Bodies interface {
	// Open returns the body kept for key and its metadata; a missing one
	// is an error wrapping fs.ErrNotExist. The caller closes it.
	Open(key string) (io.ReadSeekCloser, BodyMeta, error)
	// Revalidated records that upstream confirmed key's body as it is.
	Revalidated(key string, m BodyMeta) error
	// Create starts a body; nothing is visible under a key before its
	// Commit.
	Create() (BodyWriter, error)
}

// BodyWriter receives one body.
type BodyWriter interface {
	io.Writer
	// Commit keeps what was written under key, replacing what was there.
	Commit(key string, m BodyMeta) error
	// Abort discards what was written; after Commit it does nothing.
	Abort()
}

// BodyMeta is what is kept with a body.
type BodyMeta struct {
	// Header holds the end-to-end response headers worth replaying
	// (Content-Type, ETag, Last-Modified, Cache-Control, Expires, ...).
	Header map[string][]string `json:"header"`
	// Stored is when the body was stored or last revalidated.
	Stored time.Time `json:"stored"`
}
