package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/semaphore"

	"moonbit-registry/module"
	"moonbit-registry/store"
)

// Index answers which checksum a published version has, and syncs when
// asked: the index mirror with its lookups (app.Index) implements it; the
// pipeline only needs these two calls.
type Index interface {
	// Checksum returns the lowercase hex SHA-256 of module@version's
	// archive; ok is false if the index does not list that version.
	Checksum(ctx context.Context, module, version string) (sum string, ok bool, err error)
	// RequestRefresh asks for the index to be brought up to date, e.g.
	// because a client asks for a version published after the last sync.
	RequestRefresh(ctx context.Context) error
}

// Fetcher gets archives from upstream; upstream.Fetcher is the HTTP one.
type Fetcher interface {
	// Fetch requests mv and hands the body to sink (size -1 when not
	// announced), once per attempt: a sink error that did not come from
	// reading the body ends the fetch with that error. Other failures wrap
	// upstream.ErrNotFound, upstream.ErrBadAnswer (ErrUpstream) or
	// upstream.ErrUnavailable (ErrUpstreamUnavailable); a fake may wrap
	// ErrNotFound or ErrUpstreamNotFound instead. The pipeline adds
	// ErrUpstreamNotFound to an error wrapping upstream.ErrNotFound.
	Fetch(ctx context.Context, mv module.Version, sink func(ctx context.Context, body io.Reader, size int64) error) error
}

// Coalescer makes concurrent misses of one archive share one fetch.
// Flights is the in-process one; a fleet-wide one (replicas sharing a
// store) implements the same call.
type Coalescer interface {
	// Do runs fn for key unless a run for key is under way, in which case
	// it waits for that run instead. It returns the run's error and
	// whether this caller waited for another's run. A caller whose ctx
	// ends stops waiting and gets ctx's error; the run goes on.
	Do(ctx context.Context, key string, fn func() error) (waited bool, err error)
}

// Defaults for Options fields left zero.
const (
	DefaultFetchTimeout         = 15 * time.Minute
	DefaultMaxConcurrentFetches = 16
)

// Options configures a Cache. Zero values take the defaults above.
type Options struct {
	Store store.Store // required
	Index Index       // required
	// Fetcher gets misses from upstream; nil serves only what the store
	// holds (offline): a miss is ErrUpstreamUnavailable.
	Fetcher Fetcher
	// Coalescer shares one fetch among concurrent misses; nil means a new
	// Flights (this process only).
	Coalescer Coalescer
	// FetchTimeout bounds a whole fetch (all attempts and backoff). The
	// fetch runs detached from the requests waiting for it, so this is
	// what stops it.
	FetchTimeout time.Duration
	// MaxConcurrentFetches bounds simultaneous upstream downloads.
	MaxConcurrentFetches int

	// OnFetch, if set, is called after every upstream fetch (one per
	// coalesced group) with its result, e.g. to feed metrics.
	OnFetch func(FetchResult)

	// Keep, if set, names archives the pipeline never deletes (Verify's
	// purge): private modules, which nothing could fetch again.
	Keep func(module.Version) bool

	// SpoolDir holds the unlinked files streamed misses are read from
	// while they arrive (GetStream); "" is the system's temporary
	// directory.
	SpoolDir string

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
	OutcomeStale Outcome = "stale" // pass-through only: stored copy served because upstream failed
)

// Stats counts what the cache did since it was created.
type Stats struct {
	Hits             int64 // Get/Ensure answered from the store
	Fetches          int64 // fetches started (one per coalesced group)
	UpstreamRequests int64 // HTTP attempts, retries included (fetchers that count them)
	FetchFailures    int64 // fetches that ended in an error
	BytesFetched     int64 // bytes of archives stored
	Coalesced        int64 // misses that waited for a fetch another request started
	InFlight         int64 // upstream fetches running now
	// From stores that track their size (a local store with a size
	// limit), zero otherwise.
	Evictions  int64 // archives evicted to honour the size limit
	StoreBytes int64 // bytes of archives in the store
	StoreFiles int64 // archives in the store
}

type counters struct {
	hits, fetches, failures, bytes, coalesced, inflight atomic.Int64
}

// attemptCounter is a fetcher that counts its requests, used when present
// (the store's optional capabilities are listed in package store).
type attemptCounter interface{ Attempts() int64 }

// Cache is the one fetch-verify-store pipeline for package archives, used
// by the proxy on a miss and by the mirror command.
type Cache struct {
	store   store.Store
	index   Index
	fetcher Fetcher
	flights Coalescer
	total   time.Duration
	log     zerolog.Logger
	sem     *semaphore.Weighted
	stats   counters
	onFetch func(FetchResult)
	keep    func(module.Version) bool

	spoolDir  string // Options.SpoolDir
	dlMu      sync.Mutex
	downloads map[module.Version]*download // misses requests stream (stream.go)
}

// New checks opts and builds a Cache.
func New(opts Options) (*Cache, error) {
	if opts.Store == nil {
		return nil, errors.New("cache: Options.Store is required")
	}
	if opts.Index == nil {
		return nil, errors.New("cache: Options.Index is required")
	}
	c := &Cache{
		store:   opts.Store,
		index:   opts.Index,
		fetcher: opts.Fetcher,
		flights: opts.Coalescer,
		total:   orDefault(opts.FetchTimeout, DefaultFetchTimeout),
		onFetch: opts.OnFetch,
		keep:    opts.Keep,
		log:     opts.Logger,

		spoolDir:  opts.SpoolDir,
		downloads: map[module.Version]*download{},
		sem:       semaphore.NewWeighted(int64(orDefault(opts.MaxConcurrentFetches, DefaultMaxConcurrentFetches))),
	}
	if c.flights == nil {
		c.flights = &Flights{}
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
		Hits:          c.stats.hits.Load(),
		Fetches:       c.stats.fetches.Load(),
		FetchFailures: c.stats.failures.Load(),
		BytesFetched:  c.stats.bytes.Load(),
		Coalesced:     c.stats.coalesced.Load(),
		InFlight:      c.stats.inflight.Load(),
	}
	if f, ok := c.fetcher.(attemptCounter); ok {
		s.UpstreamRequests = f.Attempts()
	}
	if u, ok := c.store.(store.UsageReporter); ok {
		use := u.Usage()
		s.Evictions, s.StoreBytes, s.StoreFiles = use.Evictions, use.Bytes, use.Files
	}
	return s
}

// hold keeps mv in a store that may evict, from before the store lookup
// until the caller returns, so that an archive a fetch has just committed
// is not evicted before the waiter opens it. The Object holds its own.
func (c *Cache) hold(mv module.Version) (release func()) {
	if h, ok := c.store.(store.Holder); ok {
		return h.Hold(mv)
	}
	return func() {}
}

// Get returns the archive, fetching and verifying it first if the store
// lacks it. The caller closes the Object. Errors wrap module.ErrBadName,
// ErrNotFound, store.ErrChecksumMismatch, ErrUpstreamUnavailable,
// ErrUpstream or store.ErrWrite, or are ctx's error if the caller gave up
// waiting.
func (c *Cache) Get(ctx context.Context, mv module.Version) (store.Object, Outcome, error) {
	obj, _, outcome, err := c.get(ctx, mv, false)
	return obj, outcome, err
}

// GetStream is Get for a request that can take the archive while it
// arrives: on a miss fetched by this process it returns a Stream as soon
// as upstream answers, instead of waiting for the whole download. Exactly
// one of the Object and the Stream is set when err is nil; the caller
// closes it.
func (c *Cache) GetStream(ctx context.Context, mv module.Version) (store.Object, *Stream, Outcome, error) {
	return c.get(ctx, mv, true)
}

// get is Get and, with stream, GetStream.
func (c *Cache) get(ctx context.Context, mv module.Version, stream bool) (store.Object, *Stream, Outcome, error) {
	// No name check of its own: the store's Open refuses a bad name (with
	// module.ErrBadName) before any I/O, and the handler has checked it
	// already.
	defer c.hold(mv)()
	obj, err := c.openCurrent(ctx, mv, true)
	if err == nil {
		c.stats.hits.Add(1)
		return obj, nil, OutcomeHit, nil
	}
	if !errors.Is(err, store.ErrNotExist) {
		return nil, nil, "", err
	}
	if stream && c.fetcher != nil {
		s, followed, err := c.follow(ctx, mv)
		if followed || err != nil {
			return nil, s, OutcomeMiss, err
		}
		// Fetched without being streamed (by another replica, or stored
		// meanwhile): from the store, as below.
	}
	// A fetch stores what the index said when it began; if the index
	// changed the checksum meanwhile, what it stored is already stale and
	// the next round fetches the new bytes. Two rounds, then give up.
	for range 2 {
		if err := c.fetch(ctx, mv); err != nil {
			return nil, nil, OutcomeMiss, err
		}
		obj, err = c.openCurrent(ctx, mv, false)
		if !errors.Is(err, store.ErrNotExist) {
			break
		}
	}
	if errors.Is(err, errStale) {
		return nil, nil, OutcomeMiss, fmt.Errorf("%w: %s: its index checksum changed during the download; try again", ErrUpstream, mv)
	}
	if err != nil {
		return nil, nil, OutcomeMiss, fmt.Errorf("open %s after fetching: %w", mv, err)
	}
	return obj, nil, OutcomeMiss, nil
}

// errStale marks a stored archive whose checksum is not the index's: it
// counts as not stored (errors.Is(err, store.ErrNotExist) holds).
var errStale = fmt.Errorf("%w: stored checksum differs from the index", store.ErrNotExist)

// openCurrent opens mv's stored archive if its recorded checksum is the
// index's (or either is unknown: an archive stored before checksums were
// kept, an index that cannot answer). A stale one (upstream re-released
// the version) is closed and reported as errStale, so it is fetched again
// and replaced; it is never served under the new checksum. recent is
// current's.
func (c *Cache) openCurrent(ctx context.Context, mv module.Version, recent bool) (store.Object, error) {
	obj, err := c.store.Open(ctx, mv)
	if err != nil {
		return nil, err
	}
	if c.current(ctx, mv, obj.Info().SHA256, recent) {
		return obj, nil
	}
	obj.Close()
	return nil, fmt.Errorf("%w: %s", errStale, mv)
}

// recentIndex is an Index that can answer a hit's lookup more cheaply,
// from what it knew up to a moment ago (indexsync.Lookups).
type recentIndex interface {
	RecentChecksum(ctx context.Context, module, version string) (sum string, ok bool, err error)
}

// current reports whether an archive stored with checksum stored is the
// one the index lists (true when either is unknown), logging when not.
// With recent, an index that can (recentIndex) answers from what it knew
// a moment ago: only the lookup of a hit, the hottest path, takes that; a
// miss and a mirror ask the index as it is.
func (c *Cache) current(ctx context.Context, mv module.Version, stored string, recent bool) bool {
	if stored == "" {
		return true
	}
	var (
		want string
		ok   bool
		err  error
	)
	if r, isRecent := c.index.(recentIndex); recent && isRecent {
		want, ok, err = r.RecentChecksum(ctx, mv.Module, mv.Version)
	} else {
		want, ok, err = c.index.Checksum(ctx, mv.Module, mv.Version)
	}
	if err != nil || !ok || strings.EqualFold(want, stored) {
		return true
	}
	c.log.Warn().Str("archive", mv.String()).Str("stored_sha256", stored).Str("index_sha256", want).
		Msg("stored archive is not the one the index lists now; fetching it again")
	return false
}

// Ensure makes sure the store holds the archive, fetching it if needed,
// without opening it: the mirror command's entry point.
func (c *Cache) Ensure(ctx context.Context, mv module.Version) (Outcome, error) {
	if err := mv.Validate(); err != nil {
		return "", err
	}
	defer c.hold(mv)()
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

// Location makes sure the store holds mv, as Ensure, and returns a signed
// URL clients can download it from; "" when the store cannot give one.
func (c *Cache) Location(ctx context.Context, mv module.Version) (string, Outcome, error) {
	p, ok := c.store.(store.Presigner)
	if !ok {
		return "", "", nil
	}
	outcome, err := c.Ensure(ctx, mv)
	if err != nil {
		return "", outcome, err
	}
	u, err := p.PresignGet(ctx, mv)
	if err != nil {
		return "", outcome, fmt.Errorf("sign a download URL for %s: %w", mv, err)
	}
	return u, outcome, nil
}

// Checksum returns the index checksum of mv without refreshing the index;
// the proxy uses it as the archive's ETag.
func (c *Cache) Checksum(ctx context.Context, mv module.Version) (string, bool, error) {
	return c.index.Checksum(ctx, mv.Module, mv.Version)
}

// has reports whether the store holds mv, current with the index (see
// openCurrent).
func (c *Cache) has(ctx context.Context, mv module.Version) (bool, error) {
	if st, ok := c.store.(store.Statter); ok {
		info, err := st.Stat(ctx, mv)
		if errors.Is(err, store.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return c.current(ctx, mv, info.SHA256, false), nil
	}
	obj, err := c.openCurrent(ctx, mv, false)
	if errors.Is(err, store.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	obj.Close()
	return true, nil
}

// fetch fetches mv into the store. Concurrent calls for the same archive
// share one fetch through the Coalescer. The fetch runs on a context
// detached from ctx (values kept, cancellation dropped, FetchTimeout
// added): a waiter that gives up returns ctx's error at once, and the fetch
// carries on for the others and for the next request.
func (c *Cache) fetch(ctx context.Context, mv module.Version) error {
	if c.fetcher == nil {
		return c.offlineMiss(ctx, mv)
	}
	waited, err := c.flights.Do(ctx, mv.String(), func() error {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.total)
		defer cancel()
		return c.fetchShared(fctx, mv)
	})
	if waited {
		c.stats.coalesced.Add(1)
	}
	return err
}

// offlineMiss still consults the index so that a version that does not
// exist is a 404, not a 504.
func (c *Cache) offlineMiss(ctx context.Context, mv module.Version) error {
	_, ok, err := c.index.Checksum(ctx, mv.Module, mv.Version)
	if err == nil && !ok {
		return fmt.Errorf("%w: %s is not in the index", ErrNotFound, mv)
	}
	return fmt.Errorf("%w: %w: archive %s", ErrUpstreamUnavailable, ErrOffline, mv)
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
	var (
		n    int64
		used *download // the download requests stream, if any follows
	)
	err = c.fetcher.Fetch(ctx, mv, func(ctx context.Context, body io.Reader, size int64) error {
		if d := c.following(mv); d != nil {
			used = d
			body = d.attempt(body, size, sum)
		}
		var err error
		n, err = store.PutVerified(ctx, c.store, mv, body, store.Meta{SHA256: sum, Size: size})
		return err
	})
	err = fetchError(err)
	if used != nil {
		used.finish(err)
		c.retire(mv, used)
	}
	c.stats.inflight.Add(-1)
	if err != nil {
		n = 0
	}
	elapsed := time.Since(start)
	if c.onFetch != nil {
		c.onFetch(FetchResult{Archive: mv, Duration: elapsed, Bytes: n, Err: err})
	}
	if err != nil {
		c.stats.failures.Add(1)
		ev := c.log.Error().Err(err).Str("archive", mv.String()).Dur("duration_ms", elapsed)
		var ce *store.ChecksumError
		if errors.As(err, &ce) {
			ev = ev.Str("expected_sha256", ce.Expected).Str("actual_sha256", ce.Actual)
		}
		ev.Msg("archive fetch failed")
		return err
	}
	c.stats.bytes.Add(n)
	c.log.Info().Str("archive", mv.String()).Int64("bytes", n).Dur("duration_ms", elapsed).Msg("archive fetched")
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
		refreshErr := c.index.RequestRefresh(ctx)
		if refreshErr != nil {
			c.log.Warn().Err(refreshErr).Str("archive", mv.String()).Msg("index refresh failed")
		}
		sum, ok, err = c.index.Checksum(ctx, mv.Module, mv.Version)
		switch {
		case err != nil:
			return "", fmt.Errorf("index lookup %s: %w", mv, err)
		case !ok && refreshErr != nil:
			// Not known right now, which is not "does not exist": the
			// client may retry (503), and moon never retries a 404.
			// The cause is logged above; it names upstream's address,
			// which this error's text may be shown to clients without.
			return "", fmt.Errorf("%w: %s is not in the local index, and bringing the index up to date failed",
				module.ErrIndexUnavailable, mv)
		case !ok:
			return "", fmt.Errorf("%w: %s is not in the index (module or version does not exist)", ErrNotFound, mv)
		}
	}
	sum = strings.ToLower(sum)
	if !module.ValidChecksum(sum) {
		return "", fmt.Errorf("%w: index checksum %q for %s is not a SHA-256", ErrUpstream, sum, mv)
	}
	return sum, nil
}

// Ping reports whether the store can take archives now (readiness).
func (c *Cache) Ping(ctx context.Context) error { return c.store.Ping(ctx) }
