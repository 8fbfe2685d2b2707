// Package upstream is everything that talks to the upstream registry over
// HTTP: the archive Fetcher the pipeline in package cache uses (retries,
// backoff, Retry-After, a size cap), the caching transport for pass-through
// responses (symbols, assets, API), the defaults for upstream URLs and the
// one check every upstream URL goes through. It never writes files itself;
// bodies go to whatever sink or response cache it is given. It imports
// nothing of the pipeline: its errors (errors.go) are its own, and package
// cache refers to them.
package upstream
