// Package cache stores package archives and fetches the ones it lacks from
// upstream: one fetch-verify-store pipeline, used both by the proxy on a miss
// and by the mirror command. It also caches upstream responses that carry HTTP
// cache semantics (symbols, assets, API).
package cache
