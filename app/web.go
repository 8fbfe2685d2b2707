package app

import (
	"context"
	"io/fs"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"moonbit-registry/cache"
	"moonbit-registry/catalog"
	"moonbit-registry/config"
	"moonbit-registry/module"
	"moonbit-registry/web"
)

// Version is the build's version (see versionOf). Worked out once: the
// status page asks for it on every request.
var Version = sync.OnceValue(func() string {
	info, _ := debug.ReadBuildInfo()
	return versionOf(stamp, info)
})

// versionOf is a build's version: the release stamp set with -ldflags
// "-X moonbit-registry/app.stamp=v1.2.3"; else a tagged module version Go
// recorded; else "devel" with the commit Go recorded from git, "-dirty"
// for uncommitted changes, and the commit's date
// ("devel 918dc0c1a2b3-dirty 2026-12-07T23:10:00Z"); "devel" alone when
// Go recorded no commit (go build -buildvcs=false, or outside a checkout).
func versionOf(stamp string, info *debug.BuildInfo) string {
	if stamp != "" {
		return stamp
	}
	if info == nil {
		return "unknown"
	}
	// Go records a pseudo-version (v0.0.0-<date>-<commit>) for an untagged
	// commit: the settings below say the same more readably.
	if v := info.Main.Version; v != "" && v != "(devel)" && !pseudoVersion.MatchString(v) {
		return v
	}
	rev, when, dirty := "", "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value[:min(len(s.Value), 12)]
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if dirty {
		rev += "-dirty"
	}
	return strings.TrimSpace("devel " + rev + " " + when)
}

// pseudoVersion matches the version Go gives an untagged commit: it ends
// in a 14-digit UTC time and a 12-digit commit, "+dirty" perhaps after.
var pseudoVersion = regexp.MustCompile(`[-.]\d{14}-[0-9a-f]{12}(\+dirty)?$`)

// stamp is set at link time for releases.
var stamp string

// newWeb builds the pages of a serving registry.
func newWeb(ctx context.Context, r *Registry, cat *catalog.Catalog, started time.Time) (*web.Handler, error) {
	var window web.Window
	counts := func(st cache.Stats) web.Counts {
		return web.Counts{Hits: st.Hits, Misses: st.Fetches + st.Coalesced, Fetches: st.Fetches}
	}
	window.Sample(started, web.Counts{})
	go func() {
		tick := time.NewTicker(time.Minute)
		defer tick.Stop()
		for {
			select {
			case now := <-tick.C:
				window.Sample(now, counts(r.Archives.Stats()))
			case <-ctx.Done():
				return
			}
		}
	}()
	sizes := &storeSizes{cfg: r.Config}
	opts := web.Options{
		Catalog: cat,
		BaseURL: r.Config.Server.BaseURL,
		Origin:  moduleOrigin(r.Config),
		Status: func(ctx context.Context) web.Status {
			st := r.Archives.Stats()
			s := web.Status{
				Version:  Version(),
				Uptime:   time.Since(started).Round(time.Second),
				Index:    indexStatus(r),
				LastHour: window.LastHour(time.Now(), counts(st)),
				InFlight: st.InFlight,
			}
			if st.StoreFiles > 0 || r.Config.Cache.MaxSize > 0 {
				// A size-limited store counts as it goes: no walk needed.
				s.Store = web.StoreStatus{Backend: r.Config.Store.Backend, MaxBytes: int64(r.Config.Cache.MaxSize),
					Archives: st.StoreFiles, Bytes: st.StoreBytes}
			} else {
				s.Store = sizes.get()
			}
			return s
		},
	}
	if r.Config.Server.BaseURLUnreachable() {
		opts.BaseURL = "" // the page tells the address it was asked for
	}
	if r.Local != nil {
		// Cheap on local disk; a remote store would pay a request per version.
		opts.Cached = func(ctx context.Context, mv module.Version) bool { return r.Archives.Cached(ctx, mv) }
	}
	return web.New(opts)
}

// indexStatus is the index part of the status.
func indexStatus(r *Registry) web.IndexStatus {
	st := r.Index.Status()
	is := web.IndexStatus{Commit: st.Commit, AgeSeconds: -1, LastSync: st.LastSync, Offline: r.Config.Server.Offline}
	if !st.LastSuccess.IsZero() {
		is.AgeSeconds = int64(time.Since(st.LastSuccess).Seconds())
	}
	if st.LastError != nil {
		is.LastError = st.LastError.Error()
	}
	// The latest contact tells: a sync, a tip check, a fetch or an API
	// request, whichever was last.
	is.UpstreamChecked, is.UpstreamOK, is.UpstreamError = r.Health.Last()
	return is
}

// storeSizes counts the local store's archives and bytes, at most every
// half minute (a walk of the directory); a remote store is not counted.
type storeSizes struct {
	cfg config.Config

	mu   sync.Mutex
	at   time.Time
	last web.StoreStatus
}

const storeCountEvery = 30 * time.Second

func (s *storeSizes) get() web.StoreStatus {
	s.mu.Lock()
	if !s.at.IsZero() && time.Since(s.at) < storeCountEvery {
		defer s.mu.Unlock()
		return s.last
	}
	s.mu.Unlock()
	st := countStore(s.cfg) // outside the lock: a walk can take a while
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last, s.at = st, time.Now()
	return st
}

// countStore describes the configured store; a local one is walked.
func countStore(cfg config.Config) web.StoreStatus {
	st := web.StoreStatus{Backend: cfg.Store.Backend, MaxBytes: int64(cfg.Cache.MaxSize), Archives: -1, Bytes: -1}
	if cfg.Store.Backend != config.BackendLocal {
		return st
	}
	st.Archives, st.Bytes = 0, 0
	filepath.WalkDir(cfg.Cache.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // an unreadable part is not counted
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && p != cfg.Cache.Dir {
			return fs.SkipDir // temporary files
		}
		if d.Type().IsRegular() && strings.HasSuffix(d.Name(), ".zip") {
			if fi, err := d.Info(); err == nil {
				st.Archives++
				st.Bytes += fi.Size()
			}
		}
		return nil
	})
	return st
}

// moduleOrigin says, for the web page, which modules are not upstream's:
// private ones and those of [[sources]].
func moduleOrigin(cfg config.Config) func(string) string {
	origins := map[string]string{}
	for _, o := range cfg.Private.Owners {
		origins[o] = "private"
	}
	for _, s := range cfg.Sources {
		for _, o := range s.Owners {
			origins[o] = "from " + s.Name
		}
	}
	return func(mod string) string { return origins[module.Owner(mod)] }
}
