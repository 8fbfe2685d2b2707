package store

import (
	"context"
	"time"
)

// Records are small documents under keys, written only with conditions:
// the private modules' records. The disk store's Records and the S3
// store's Objects both are one; store/recordstest is the suite they run.
type Records interface {
	// Create writes key only if it does not exist; created is false if it
	// does.
	Create(ctx context.Context, key string, body []byte) (etag string, created bool, err error)
	// Swap replaces key only if it still has etag; swapped is false when
	// it changed or is gone.
	Swap(ctx context.Context, key string, body []byte, etag string) (newETag string, swapped bool, err error)
	// Read returns key's body, its ETag and age; found is false if absent.
	Read(ctx context.Context, key string) (body []byte, etag string, age time.Duration, found bool, err error)
	// List returns every key.
	List(ctx context.Context) ([]string, error)
}
