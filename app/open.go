// Package app is the composition root: it opens the registry's parts from
// a config.Config in the one order their types allow and runs the work of
// the commands that need them. Each command opens what it uses: sync,
// publish and the marks open the archive store and the index mirror over
// it (openIndex); mirror, verify and serve add the fetch pipeline (Open);
// only serve builds the server, the pass-through and the web page.
// package main parses the command line and calls it; nothing here parses
// flags or exits.
package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"moonbit-registry/cache"
	"moonbit-registry/config"
	"moonbit-registry/fleet"
	"moonbit-registry/indexsync"
	"moonbit-registry/module"
	"moonbit-registry/private"
	"moonbit-registry/resolve"
	"moonbit-registry/store"
	"moonbit-registry/store/disk"
	"moonbit-registry/store/s3"
	"moonbit-registry/upstream"
)

// UsageError is a mistake in how a command was called (bad pattern,
// nothing to do, unreadable input): the command line says exit status 2.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

func usageErrorf(format string, args ...any) error {
	return UsageError{fmt.Errorf(format, args...)}
}

// Use says how a command uses the archives.
type Use struct {
	// Fetch allows fetching from upstream; false serves what is stored.
	Fetch bool
	// Evict enforces cache.max_size. Commands that only read or report
	// must not delete.
	Evict bool
	// ReadOnly never writes the archive store (offline serving, which
	// also works on a read-only copy of the data).
	ReadOnly bool
	// OnFetch, if set, sees every finished upstream fetch (metrics).
	OnFetch func(cache.FetchResult)
	// Serve: the registry answers clients (their index requests may make
	// it look at upstream, see index.check_interval).
	Serve bool
	// OnStoreRequest, if set, sees every request to a remote store.
	OnStoreRequest func(op string, d time.Duration, err error)
	// Store, if set, is the archive store instead of the configured one
	// (in-process tests: store/mem). It is used as a store of its own:
	// no size limit, no fleet.
	Store store.Store
}

// Registry is the opened parts of a registry root.
type Registry struct {
	Config config.Config
	Log    zerolog.Logger
	// Store keeps the archives: the local disk store or the shared bucket.
	Store store.Store
	// Local is Store when it is the local disk store, else nil; the
	// pass-through's kept bodies share its size limit.
	Local *disk.Store
	Index Index
	// Archives is the fetch pipeline; nil when the command opened only
	// the index (openIndex).
	Archives *cache.Cache
	// Leases coordinate fetches with the other replicas on the bucket;
	// nil with the local store.
	Leases *fleet.Leases
	// Private publishes the team's own modules; nil without [private]
	// owners.
	Private *private.Registry
	// Health is what the latest contact with upstream said: index syncs
	// and tip checks, archive fetches, pass-through requests.
	Health *upstream.Health
	// shared is Store when it is a fleet's bucket, else nil.
	shared *s3.Store
}

// Index is the index mirror with its lookups: what the other parts read
// (the archive pipeline, the catalog, resolution, publishing).
type Index struct {
	*indexsync.Mirror
	*indexsync.Lookups
}

// Open opens everything a command that fetches or serves archives needs:
// the parts openIndex opens and the fetch pipeline over them (with the
// fetcher when use.Fetch, and the leases of a fleet). Close ends it.
func Open(cfg config.Config, use Use, log zerolog.Logger) (*Registry, error) {
	r, err := openIndex(cfg, use, log)
	if err != nil {
		return nil, err
	}
	if err := r.openPipeline(use); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// openIndex opens the archive store and the index mirror over it (which
// may not have synced yet), with the private modules and, on a shared
// bucket, the fleet's index tip: what sync, publish and the marks need.
// A sync that changes a published version's index line drops that
// version's stored archive if it no longer matches (cache.DropStale). It
// opens no fetcher and no fetch pipeline (Archives stays nil).
func openIndex(cfg config.Config, use Use, log zerolog.Logger) (*Registry, error) {
	cacheLog := log.With().Str("component", "cache").Logger()
	maxBytes := int64(0)
	if use.Evict {
		maxBytes = int64(cfg.Cache.MaxSize)
	}
	archives, local, shared, err := openStore(cfg, maxBytes, use, cacheLog)
	if err != nil {
		return nil, err
	}
	r := &Registry{Config: cfg, Log: log, Store: archives, Local: local, shared: shared,
		Health: &upstream.Health{}} // told by the index, the fetcher and the pass-through
	var indexFleet indexsync.Fleet // nil: an index mirror on its own
	if shared != nil {
		// Replicas on one bucket serve one index that only moves forward.
		objs := shared.Objects("index")
		indexFleet = fleet.NewIndexTip(objs, objs)
	}
	var overlay indexsync.Overlay // nil: upstream's index as it is
	if len(cfg.Private.Owners) > 0 {
		var records store.Records = disk.NewRecords(cfg.Private.Dir)
		if shared != nil {
			records = shared.Objects("private") // every replica sees every publish
		}
		r.Private = private.New(private.Options{
			Owners:         cfg.Private.Owners,
			Records:        records,
			Store:          archives,
			MaxArchiveSize: int64(cfg.Private.MaxArchiveSize),
			ReadOnly:       use.ReadOnly,
		})
		overlay = r.Private
	}
	var sources []indexsync.Source
	for _, s := range cfg.Sources {
		src := indexsync.Source{Name: s.Name, URL: s.IndexURL, Owners: s.Owners}
		if s.Authorization != "" {
			src.Header = "Authorization: " + s.Authorization
		}
		sources = append(sources, src)
	}
	upstreamHeader := ""
	if cfg.Upstream.Authorization != "" {
		upstreamHeader = "Authorization: " + cfg.Upstream.Authorization
	}
	mirror, err := indexsync.New(indexsync.Options{
		Dir:            cfg.Index.Dir,
		UpstreamURL:    cfg.Upstream.IndexURL,
		UpstreamHeader: upstreamHeader,
		Sources:        sources,
		Branch:         cfg.Index.Branch,
		Interval:       cfg.Index.SyncInterval.D(),
		StaleAfter:     cfg.Index.StaleAfter.D(),
		GitTimeout:     cfg.Index.GitTimeout.D(),
		CheckInterval:  checkInterval(cfg, use),
		OnUpstream:     r.Health.Observe,
		Fleet:          indexFleet,
		Overlay:        overlay,
		OnChange: func(ch indexsync.Changes) {
			changed := make([]cache.Changed, len(ch.Changed))
			for i, v := range ch.Changed {
				changed[i] = cache.Changed{Archive: v.Archive(), SHA256: v.Checksum}
			}
			cache.DropStale(context.Background(), archives, changed, cacheLog)
		},
		Logger: log,
	})
	if err != nil {
		return nil, err
	}
	r.Index = Index{mirror, mirror.Lookups()}
	if r.Private != nil {
		r.Private.UseIndex(servedIndex{r.Index}) // the index reads the private files: wired once both exist
	}
	return r, nil
}

// openPipeline opens the fetch pipeline over the store and the index:
// with a fetcher from upstream and the sources when use.Fetch (guarded
// against fetching private owners' archives), and with the fleet's leases
// on a shared bucket, so replicas fetch each archive once between them.
func (r *Registry) openPipeline(use Use) error {
	cfg := r.Config
	cacheLog := r.Log.With().Str("component", "cache").Logger()
	var coalescer cache.Coalescer // nil: this process only
	if r.shared != nil {
		shared := r.shared
		leases, err := fleet.NewLeases(fleet.LeaseOptions{
			Objects: shared.Objects("leases"),
			Present: func(ctx context.Context, key string) (bool, error) {
				mv, err := module.ParseVersion(key)
				if err != nil {
					return false, err
				}
				return shared.Has(ctx, mv)
			},
			TTL:    cfg.Store.S3.LeaseTTL.D(),
			Logger: r.Log,
		})
		if err != nil {
			return err
		}
		r.Leases, coalescer = leases, leases
	}
	var fetcher cache.Fetcher // nil: cached archives only
	spool := ""
	if use.Fetch {
		retries := cfg.Upstream.Retries
		if retries == 0 {
			retries = -1 // the fetcher reads 0 as its default; the config means none
		}
		var err error
		if fetcher, err = newFetcher(cfg, retries, r.Health, cacheLog); err != nil {
			return err
		}
		if r.Private != nil {
			fetcher = r.Private.GuardFetcher(fetcher)
		}
		// Streamed misses are read from unlinked files here while they
		// arrive: on the data disk, not a memory-backed /tmp.
		spool = filepath.Join(cfg.Cache.HTTPDir, "streams")
		if err := os.MkdirAll(spool, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", spool, err)
		}
	}
	pipeline, err := cache.New(cache.Options{
		Store:                r.Store,
		Index:                r.Index,
		Fetcher:              fetcher,
		MaxConcurrentFetches: cfg.Cache.MaxConcurrentFetches,
		Coalescer:            coalescer,
		OnFetch:              use.OnFetch,
		Keep:                 privateArchive(cfg),
		SpoolDir:             spool,
		Logger:               cacheLog,
	})
	if err != nil {
		return err
	}
	r.Archives = pipeline
	return nil
}

// newFetcher fetches each archive from the source that serves its owner
// ([[sources]]), every other one from upstream.
func newFetcher(cfg config.Config, retries int, health *upstream.Health, log zerolog.Logger) (cache.Fetcher, error) {
	// Upstream's health is upstream's: [[sources]] are other registries.
	fetcherFor := func(downloadURL, auth string, rt http.RoundTripper) (*upstream.Fetcher, error) {
		return upstream.NewFetcher(upstream.FetcherOptions{
			Client:        &http.Client{Transport: rt},
			DownloadURL:   downloadURL,
			UserAgent:     cfg.Upstream.UserAgent,
			Timeout:       cfg.Upstream.Timeout.D(),
			Retries:       retries,
			Authorization: auth,
			Logger:        log,
		})
	}
	def, err := fetcherFor(cfg.Upstream.DownloadURL, cfg.Upstream.Authorization, health.Transport(nil))
	if err != nil {
		return nil, err
	}
	if len(cfg.Sources) == 0 {
		return def, nil
	}
	router := upstream.Router{Default: def, ByOwner: map[string]*upstream.Fetcher{}}
	for _, s := range cfg.Sources {
		f, err := fetcherFor(s.DownloadURL, s.Authorization, upstream.NewTransport())
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", s.Name, err)
		}
		for _, o := range s.Owners {
			router.ByOwner[o] = f
		}
	}
	return router, nil
}

// privateArchive reports whether an archive is a private module's: never
// evicted nor purged, since nothing could fetch it again.
func privateArchive(cfg config.Config) func(module.Version) bool {
	owners := slices.Clone(cfg.Private.Owners)
	return func(mv module.Version) bool { return slices.Contains(owners, module.Owner(mv.Module)) }
}

// storeCheckTimeout bounds the start-up check of a remote store.
const storeCheckTimeout = 30 * time.Second

// servedIndex is the index mirror as private modules see it.
type servedIndex struct{ m Index }

func (s servedIndex) Versions(ctx context.Context, mod string) ([]string, error) {
	vs, err := s.m.Versions(ctx, mod)
	if errors.Is(err, module.ErrModuleNotFound) {
		return nil, nil
	}
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Version
	}
	return out, err
}

func (s servedIndex) Recompose(ctx context.Context) error {
	_, err := s.m.Recompose(ctx)
	return err
}

// openStore opens the archive store the configuration names: local is
// it when it is the local disk store, shared when it is the bucket of a
// fleet (store.backend = "s3"); use.Store replaces both.
func openStore(cfg config.Config, maxBytes int64, use Use, log zerolog.Logger) (archives store.Store, local *disk.Store, shared *s3.Store, err error) {
	if use.Store != nil {
		return use.Store, nil, nil, nil
	}
	if cfg.Store.Backend == config.BackendS3 {
		ctx, cancel := context.WithTimeout(context.Background(), storeCheckTimeout)
		defer cancel()
		o := cfg.Store.S3
		s, err := s3.New(ctx, s3.Options{Endpoint: o.Endpoint, Bucket: o.Bucket, Prefix: o.Prefix, Region: o.Region,
			PathStyle: o.PathStyle, Observe: use.OnStoreRequest})
		if err != nil {
			return nil, nil, nil, err
		}
		return s, nil, s, nil
	}
	d, err := disk.New(disk.Options{Root: cfg.Cache.Dir, MaxBytes: maxBytes, ReadOnly: use.ReadOnly, Keep: privateArchive(cfg), Logger: log})
	if err != nil {
		return nil, nil, nil, err
	}
	return d, d, nil, nil
}

// Close waits for any index sync the registry started, so no git outlives
// the process.
func (r *Registry) Close() { r.Index.Close() }

// syncFirst brings the index up to date unless offline; the error says how
// to go on without upstream.
func (r *Registry) syncFirst(ctx context.Context, offline bool) error {
	if offline {
		return nil
	}
	if _, err := r.Index.Sync(ctx); err != nil {
		return fmt.Errorf("index sync from %s failed (use --offline to use the local mirror as it is): %w", r.Config.Upstream.IndexURL, err)
	}
	return nil
}

// selectPatterns resolves mirror/verify patterns; a pattern that is
// malformed or matches nothing is a usage error.
func (r *Registry) selectPatterns(ctx context.Context, patterns []string, opts resolve.SelectOptions) (resolve.Selection, error) {
	sel, err := resolve.Select(ctx, r.Index, patterns, opts)
	if errors.Is(err, resolve.ErrBadPattern) || errors.Is(err, resolve.ErrNoMatch) {
		return sel, UsageError{err}
	}
	return sel, err
}

// checkInterval is index.check_interval for a server that fetches from
// upstream, 0 otherwise (offline, or commands that sync themselves).
func checkInterval(cfg config.Config, use Use) time.Duration {
	if !use.Fetch || !use.Serve {
		return 0
	}
	return cfg.Index.CheckInterval.D()
}
