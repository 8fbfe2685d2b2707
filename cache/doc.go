// Package cache is the one fetch-verify-store pipeline for package
// archives: a hit comes from the store, a miss is fetched from upstream once
// (concurrent misses share the fetch through a Coalescer), verified against
// the index checksum while it streams into the store (store.PutVerified),
// and served from then on. The proxy, the mirror command and verify all go
// through it. It does not speak HTTP; archives are written by the Store it
// is given, and the only files it writes itself are the unlinked spool
// files that streamed misses are read from while they arrive (SpoolDir).
package cache
