// Package cache is the one fetch-verify-store pipeline for package
// archives: a hit comes from the store, a miss is fetched from upstream once
// (concurrent misses share the fetch through a Coalescer), verified against
// the index checksum while it streams into the store (store.PutVerified),
// and served from then on. The proxy, the mirror command and verify all go
// through it. It neither speaks HTTP nor writes files itself: the Store, the
// Fetcher and the Index it is given do.
package cache
