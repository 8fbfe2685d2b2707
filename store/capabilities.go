package store

import (
	"context"

	"moonbit-registry/module"
)

// Optional capabilities: a Store may also implement any of these, and its
// users check for them with a type assertion. This is the one list; the
// compliance suite (storetest) checks each a backend implements.
//
//  1. Statter: describe an archive without opening it (the S3 store: a HEAD
//     instead of a GET; the disk store: a stat). The cache checks a stored
//     archive's checksum with it.
//  2. Presigner: a URL clients download an archive from themselves (the S3
//     store, with store.s3.redirect).
//  3. Batcher: many commits made durable at once (the disk store: one fsync
//     per directory instead of per archive), for mirror.
//  4. Holder: keep an archive from eviction while a caller is about to
//     open it (a store with a size limit).
//  5. UsageReporter: the store's size, for metrics and status.
//
// Objects of backends that can seek also implement io.Seeker (see
// Store.Open).
type (
	Statter interface {
		// Stat describes mv's archive as Open's Info would; a missing one
		// is an error wrapping ErrNotExist.
		Stat(ctx context.Context, mv module.Version) (Info, error)
	}
	Presigner interface {
		// PresignGet returns a URL, valid for a while, that serves mv's
		// archive.
		PresignGet(ctx context.Context, mv module.Version) (string, error)
	}
	Batcher interface {
		// Batch returns a context whose commits may defer their
		// durability, and a function that makes them all durable.
		Batch(ctx context.Context) (context.Context, func() error)
	}
	Holder interface {
		// Hold keeps mv from eviction until release is called.
		Hold(mv module.Version) (release func())
	}
	UsageReporter interface {
		// Usage reports the store's size now; all zero when the store
		// does not count it (the disk store without a size limit).
		Usage() Usage
	}
)
