package cache

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"moonbit-registry/module"

	"github.com/rs/zerolog"
	"golang.org/x/sync/semaphore"
	"golang.org/x/sync/singleflight"
)

// Index answers which checksum a published version has. indexsync.Mirror
// implements it; the cache only needs these two calls.
type Index interface {
	// Checksum returns the lowercase hex SHA-256 of module@version's
	// archive; ok is false if the index does not list that version.
	Checksum(ctx context.Context, module, version string) (sum string, ok bool, err error)
	// RequestRefresh asks for the index to be brought up to date, e.g.
	// because a client asks for a version published after the last sync.
	RequestRefresh(ctx context.Context) error
}

// Defaults for Options fields left zero.
const (
	DefaultDownloadURL          = "https://download.mooncakes.io"
	DefaultUserAgent            = "mooncake/0.1.0 (moonbit-registry)"
	DefaultAttemptTimeout       = 5 * time.Minute
	DefaultFetchTimeout         = 15 * time.Minute
	DefaultRetries              = 3
	DefaultRetryBackoff         = 500 * time.Millisecond
	DefaultMaxConcurrentFetches = 16
	DefaultMaxArchiveBytes      = 1 << 30
)

// Options configures a Cache. Zero values take the defaults above.
type Options struct {
	Store Store // required
	Index Index // required

	// DownloadURL is the upstream archive base: archives are fetched from
	// <DownloadURL>/user/<owner>/<rest>/<version>.zip.
	DownloadURL string
	// UserAgent is sent upstream; upstream's firewall rejects requests
	// without one, and it should start with "mooncake/" like the client's.
	UserAgent string
	// Client makes upstream requests; nil means a client with sane dial
	// and response-header timeouts. Its own Timeout should be zero: the
	// cache bounds each attempt with AttemptTimeout.
	Client *http.Client
	// AttemptTimeout bounds one upstream attempt, body included.
	AttemptTimeout time.Duration
	// FetchTimeout bounds a whole fetch (all attempts and backoff). The
	// fetch runs detached from the requests waiting for it, so this is
	// what stops it.
	FetchTimeout time.Duration
	// Retries is how many times a failed attempt is retried (5xx, 408,
	// 429, connection errors, bodies cut short); never on 404. Zero means
	// DefaultRetries; negative means no retries.
	Retries int
	// RetryBackoff is the wait before the first retry; it doubles for each
	// further one.
	RetryBackoff time.Duration
	// MaxConcurrentFetches bounds simultaneous upstream downloads.
	MaxConcurrentFetches int
	// MaxArchiveBytes rejects archives larger than this (protects the disk
	// from a misbehaving upstream).
	MaxArchiveBytes int64
	// Offline serves only what the store holds; a miss is
	// ErrUpstreamUnavailable without contacting upstream.
	Offline bool
	// MaxBytes limits the store's size: least-recently-used archives not in
	// use are evicted when it is exceeded (see evict.go). 0: unlimited.
	MaxBytes int64

	// OnFetch, if set, is called after every upstream fetch (one per
	// coalesced group) with its result, e.g. to feed metrics.
	OnFetch func(FetchResult)

	Logger zerolog.Logger
}

// FetchResult describes one finished upstream fetch.
type FetchResult struct {
	Archive  module.Version
	Duration time.Duration
	Bytes    int64
	Err      error // nil on success
}

// Outcome says how a request was served, for access logs and metrics.
type Outcome string

const (
	OutcomeHit   Outcome = "hit"   // served from the store
	OutcomeMiss  Outcome = "miss"  // fetched from upstream (or waited for a fetch)
	OutcomeStale Outcome = "stale" // HTTP cache only: stored copy served because upstream failed
)

// Stats counts what the cache did since it was created.
type Stats struct {
	Hits             int64 // Get/Ensure answered from the store
	Fetches          int64 // fetches started (one per coalesced group)
	UpstreamRequests int64 // HTTP attempts, retries included
	FetchFailures    int64 // fetches that ended in an error
	BytesFetched     int64 // bytes of archives stored
	Coalesced        int64 // misses that waited for a fetch another request started
	InFlight         int64 // upstream fetches running now
	// With Options.MaxBytes only (zero otherwise); StoreBytes and
	// StoreFiles are complete once the start-up walk of the store is done.
	Evictions  int64 // archives evicted to honour MaxBytes
	StoreBytes int64 // bytes of archives in the store
	StoreFiles int64 // archives in the store
}

type counters struct {
	hits, fetches, requests, failures, bytes, coalesced, inflight atomic.Int64
}

// Cache is the one fetch-verify-store pipeline for package archives, used
// by the proxy on a miss and by the mirror command.
type Cache struct {
	store     Store
	index     Index
	base      *url.URL
	userAgent string
	client    *http.Client
	attempt   time.Duration
	total     time.Duration
	retries   int
	backoff   time.Duration
	maxBytes  int64
	offline   bool
	log       zerolog.Logger

	flights singleflight.Group
	sem     *semaphore.Weighted
	stats   counters
	onFetch func(FetchResult)
	evict   *evictor // nil without a size limit
}

// New checks opts and builds a Cache.
func New(opts Options) (*Cache, error) {
	if opts.Store == nil {
		return nil, errors.New("cache: Options.Store is required")
	}
	if opts.Index == nil {
		return nil, errors.New("cache: Options.Index is required")
	}
	if opts.MaxBytes < 0 {
		return nil, fmt.Errorf("cache: Options.MaxBytes %d is negative", opts.MaxBytes)
	}
	base := opts.DownloadURL
	if base == "" {
		base = DefaultDownloadURL
	}
	u, err := url.Parse(strings.TrimSuffix(base, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("cache: download URL %q must be an absolute http(s) URL", base)
	}
	c := &Cache{
		store:     opts.Store,
		index:     opts.Index,
		base:      u,
		userAgent: orDefault(opts.UserAgent, DefaultUserAgent),
		client:    opts.Client,
		attempt:   orDefault(opts.AttemptTimeout, DefaultAttemptTimeout),
		total:     orDefault(opts.FetchTimeout, DefaultFetchTimeout),
		retries:   orDefault(opts.Retries, DefaultRetries),
		backoff:   orDefault(opts.RetryBackoff, DefaultRetryBackoff),
		maxBytes:  orDefault(opts.MaxArchiveBytes, DefaultMaxArchiveBytes),
		offline:   opts.Offline,
		onFetch:   opts.OnFetch,
		log:       opts.Logger,
		sem:       semaphore.NewWeighted(int64(orDefault(opts.MaxConcurrentFetches, DefaultMaxConcurrentFetches))),
	}
	if c.retries < 0 {
		c.retries = 0
	}
	if c.client == nil {
		c.client = &http.Client{Transport: NewUpstreamTransport()}
	}
	if opts.MaxBytes > 0 {
		// Every store access goes through the wrapper, which pins opened
		// archives and counts writes and deletions.
		c.evict = newEvictor(opts.Store, opts.MaxBytes, opts.Logger)
		c.store = &evictingStore{Store: opts.Store, e: c.evict}
		go c.evict.scan() // ends on its own once the store is walked
	}
	return c, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Stats returns a snapshot of the counters.
func (c *Cache) Stats() Stats {
	s := Stats{
		Hits:             c.stats.hits.Load(),
		Fetches:          c.stats.fetches.Load(),
		UpstreamRequests: c.stats.requests.Load(),
		FetchFailures:    c.stats.failures.Load(),
		BytesFetched:     c.stats.bytes.Load(),
		Coalesced:        c.stats.coalesced.Load(),
		InFlight:         c.stats.inflight.Load(),
	}
	if c.evict != nil {
		s.Evictions, s.StoreBytes, s.StoreFiles = c.evict.stats()
	}
	return s
}

// Get returns the archive, fetching and verifying it first if the store
// lacks it. The caller closes the Object. Errors wrap module.ErrBadName,
// ErrNotFound, ErrChecksumMismatch, ErrUpstreamUnavailable or ErrUpstream,
// or are ctx's error if the caller gave up waiting.
func (c *Cache) Get(ctx context.Context, mv module.Version) (Object, Outcome, error) {
	if err := mv.Validate(); err != nil {
		return nil, "", err
	}
	// With a size limit: no eviction of mv until this returns (the Object
	// pins it itself from its Open on), and a use recorded.
	defer c.hold(mv)()
	obj, err := c.store.Open(ctx, mv)
	if err == nil {
		c.stats.hits.Add(1)
		return obj, OutcomeHit, nil
	}
	if !errors.Is(err, ErrNotExist) {
		return nil, "", err
	}
	if err := c.fetch(ctx, mv); err != nil {
		return nil, OutcomeMiss, err
	}
	obj, err = c.store.Open(ctx, mv)
	if err != nil {
		return nil, OutcomeMiss, fmt.Errorf("open %s after fetching: %w", mv, err)
	}
	return obj, OutcomeMiss, nil
}

// Ensure makes sure the store holds the archive, fetching it if needed,
// without opening it: the mirror command's entry point.
func (c *Cache) Ensure(ctx context.Context, mv module.Version) (Outcome, error) {
	if err := mv.Validate(); err != nil {
		return "", err
	}
	defer c.hold(mv)() // as in Get
	present, err := c.has(ctx, mv)
	if err != nil {
		return "", err
	}
	if present {
		c.stats.hits.Add(1)
		return OutcomeHit, nil
	}
	return OutcomeMiss, c.fetch(ctx, mv)
}

// Checksum returns the index checksum of mv without refreshing the index;
// the proxy uses it as the archive's ETag.
func (c *Cache) Checksum(ctx context.Context, mv module.Version) (string, bool, error) {
	return c.index.Checksum(ctx, mv.Module, mv.Version)
}

func (c *Cache) has(ctx context.Context, mv module.Version) (bool, error) {
	obj, err := c.store.Open(ctx, mv)
	if errors.Is(err, ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	obj.Close()
	return true, nil
}

// fetch fetches mv into the store. Concurrent calls for the same archive
// share one fetch. The fetch runs on a context detached from ctx (values
// kept, cancellation dropped, FetchTimeout added): a waiter that gives up
// returns ctx's error at once, and the fetch carries on for the others and
// for the next request.
func (c *Cache) fetch(ctx context.Context, mv module.Version) error {
	if c.offline {
		return c.offlineMiss(ctx, mv)
	}
	led := false // set by the leader's run; read after the result arrives
	ch := c.flights.DoChan(mv.String(), func() (any, error) {
		led = true
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.total)
		defer cancel()
		return nil, c.fetchShared(fctx, mv)
	})
	select {
	case res := <-ch:
		if !led {
			c.stats.coalesced.Add(1)
		}
		return res.Err
	case <-ctx.Done():
		return fmt.Errorf("waiting for %s: %w", mv, context.Cause(ctx))
	}
}

// offlineMiss still consults the index so that a version that does not
// exist is a 404, not a 504.
func (c *Cache) offlineMiss(ctx context.Context, mv module.Version) error {
	_, ok, err := c.index.Checksum(ctx, mv.Module, mv.Version)
	if err == nil && !ok {
		return fmt.Errorf("%w: %s is not in the index", ErrNotFound, mv)
	}
	return fmt.Errorf("%w: archive %s (offline mode)", ErrUpstreamUnavailable, mv)
}

// fetchShared is the body of one coalesced fetch.
func (c *Cache) fetchShared(ctx context.Context, mv module.Version) error {
	// A fetch that finished between the caller's store lookup and joining
	// the flight has already stored the archive: do not fetch it twice.
	if present, err := c.has(ctx, mv); err != nil || present {
		return err
	}
	sum, err := c.checksum(ctx, mv)
	if err != nil {
		return err
	}
	if err := c.sem.Acquire(ctx, 1); err != nil {
		return fmt.Errorf("%w: archive %s: waiting for a download slot: %w", ErrUpstreamUnavailable, mv, err)
	}
	defer c.sem.Release(1)

	c.stats.fetches.Add(1)
	c.stats.inflight.Add(1)
	start := time.Now()
	n, err := c.download(ctx, mv, sum)
	c.stats.inflight.Add(-1)
	if c.onFetch != nil {
		c.onFetch(FetchResult{Archive: mv, Duration: time.Since(start), Bytes: n, Err: err})
	}
	if err != nil {
		c.stats.failures.Add(1)
		ev := c.log.Error().Err(err).Str("archive", mv.String()).Dur("duration", time.Since(start))
		var ce *ChecksumError
		if errors.As(err, &ce) {
			ev = ev.Str("expected_sha256", ce.Expected).Str("actual_sha256", ce.Actual)
		}
		ev.Msg("archive fetch failed")
		return err
	}
	c.stats.bytes.Add(n)
	c.log.Info().Str("archive", mv.String()).Int64("bytes", n).Dur("duration", time.Since(start)).Msg("archive fetched")
	return nil
}

// checksum looks mv up in the index, asking for one refresh if it is not
// there: a client may know of a version published after the last sync.
func (c *Cache) checksum(ctx context.Context, mv module.Version) (string, error) {
	sum, ok, err := c.index.Checksum(ctx, mv.Module, mv.Version)
	if err != nil {
		return "", fmt.Errorf("index lookup %s: %w", mv, err)
	}
	if !ok {
		if err := c.index.RequestRefresh(ctx); err != nil {
			c.log.Warn().Err(err).Str("archive", mv.String()).Msg("index refresh failed")
		}
		sum, ok, err = c.index.Checksum(ctx, mv.Module, mv.Version)
		if err != nil {
			return "", fmt.Errorf("index lookup %s: %w", mv, err)
		}
		if !ok {
			return "", fmt.Errorf("%w: %s is not in the index (module or version does not exist)", ErrNotFound, mv)
		}
	}
	sum = strings.ToLower(sum)
	if !module.ValidChecksum(sum) {
		return "", fmt.Errorf("%w: index checksum %q for %s is not a SHA-256", ErrUpstream, sum, mv)
	}
	return sum, nil
}
