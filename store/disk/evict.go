package disk

// Size limit ([cache] max_size, Options.MaxBytes): least-recently-used
// eviction of archives.
//
// Bookkeeping. An evictor keeps, in memory, every stored archive's size and
// last use in a list ordered by recency, and the total. A new Store learns
// the store in a background walk (one stat per archive), so start-up never
// waits for a big store; until that walk is done nothing is evicted (the
// total is not known yet), and uses and writes seen meanwhile are merged
// into its result.
//
// Recency across restarts. The file's mtime is the persisted "last used":
// the walk seeds the order from it, and a use rewrites it (os.Chtimes) at
// most once per touchInterval per archive, so the hot path is one map
// lookup and a list move, not a syscall per request. mtime rather than
// atime because atime is unreliable (relatime, noatime) and reading it is
// platform-specific. The cost: an archive's Last-Modified moves when it is
// used; clients revalidate with its ETag (the checksum), which does not.
//
// Trigger and target. After every commit the store may have grown: if the
// total exceeds MaxBytes, least-recently-used archives are deleted until
// it is at most lowWaterPercent of MaxBytes, so that a full cache does not
// evict on every single fetch. The pass runs in the goroutine that stored
// the archive, before its fetch returns, so a client served a fresh
// archive finds the store already within its limit.
//
// Pins. An archive that is open (an Object not closed yet: being served,
// hashed by verify, ...), being written, or held (Store.Hold: the archive
// pipeline holds what a request asks for from before its store lookup until
// it has opened it, covering the gap between a fetch committing the archive
// and the waiter's Open) is never chosen. Pinning
// and deleting both happen under the evictor's lock, so an archive cannot
// be pinned and then deleted under the pinner. If everything over the
// limit is pinned, the pass stops and the next unpin runs it again.
//
// An archive larger than MaxBytes by itself is stored and served (refusing
// it would make it impossible to serve at all), kept at the cold end of
// the order and not counted while pinned, so it does not flush the rest of
// the cache; it is evicted as soon as nobody holds it, and every later
// request fetches it again. A warning says so; max_size should be larger
// than the largest archive.
//
// Limits. Only what goes through this Store is counted as it happens:
// archives another process (a one-shot mirror on the same root) adds are
// counted at the next start, and files someone else deleted are dropped
// from the count when eviction finds them gone. A one-shot command that
// ends before its walk does evicts nothing; the next start catches up.

import (
	"container/list"
	"context"
	"errors"
	"io/fs"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"moonbit-registry/module"
	"moonbit-registry/store"

	"github.com/rs/zerolog"
)

const (
	// lowWaterPercent is how full the store is left after an eviction pass.
	lowWaterPercent = 90
	// touchInterval bounds how often one archive's mtime is rewritten.
	touchInterval = time.Minute
	// maxEvictFailures ends a pass after this many failed deletions, and
	// evictPause is how long eviction then rests, so that a store refusing
	// deletions (read-only, permissions) does not cost attempts and error
	// lines on every request.
	maxEvictFailures = 3
	evictPause       = time.Minute
)

// archiveUsage is a stat: the size and mtime (the last recorded use).
func (s *Store) archiveUsage(mv module.Version) (int64, time.Time, error) {
	fi, err := os.Stat(s.path(mv.RelPath()))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, time.Time{}, store.ErrNotExist
	}
	if err != nil {
		return 0, time.Time{}, err
	}
	return diskUsage(fi), fi.ModTime(), nil
}

// diskUsage is what a file takes on disk (its allocated blocks), which is
// what a size limit is about: a length undercounts every partial block.
func diskUsage(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Blocks > 0 {
		return st.Blocks * 512
	}
	return fi.Size()
}

// markUsed persists a use as the archive's mtime (see the top of this file).
func (s *Store) markUsed(mv module.Version, t time.Time) error {
	return os.Chtimes(s.path(mv.RelPath()), t, t)
}

// lruEntry is one stored archive.
type lruEntry struct {
	mv      module.Version
	size    int64
	used    time.Time // last use, in memory
	touched time.Time // last use written to the store
	elem    *list.Element
}

// evictor enforces the size limit; see the top of this file.
type evictor struct {
	store      *Store                    // evicting calls its remove, which is not counted twice
	keep       func(module.Version) bool // Options.Keep; nil keeps nothing
	max, low   int64
	touchEvery time.Duration
	log        zerolog.Logger
	scanDone   chan struct{} // closed when the start-up walk (and its pass) is over

	mu        sync.Mutex
	scanned   bool
	evicting  bool      // a pass is running
	pausedTil time.Time // no pass before this, after failed deletions
	entries   map[module.Version]*lruEntry
	lru       list.List // of *lruEntry; front: most recently used
	total     int64
	pins      map[module.Version]int
	evictions int64
	shared    []SharedSpace // counted against the limit too; evicted first
	// Seen before the walk finished, merged into its result.
	pendingUse map[module.Version]time.Time
	gone       map[module.Version]struct{}
}

// newEvictor builds an evictor; nothing is evicted before its scan (run in
// the background by New) is over.
func newEvictor(s *Store, maxBytes int64, touchEvery time.Duration, log zerolog.Logger) *evictor {
	if touchEvery <= 0 {
		touchEvery = touchInterval
	}
	return &evictor{
		store: s,
		max:   maxBytes,
		// maxBytes*lowWaterPercent/100 without overflowing.
		low:        maxBytes/100*lowWaterPercent + maxBytes%100*lowWaterPercent/100,
		touchEvery: touchEvery,
		log:        log,
		scanDone:   make(chan struct{}),
		entries:    map[module.Version]*lruEntry{},
		pins:       map[module.Version]int{},
		pendingUse: map[module.Version]time.Time{},
		gone:       map[module.Version]struct{}{},
	}
}

// scan learns what the store holds, then enforces the limit once.
func (e *evictor) scan() {
	defer close(e.scanDone)
	start := time.Now()
	ctx := context.Background()
	type found struct {
		mv   module.Version
		size int64
		used time.Time
	}
	var all []found
	err := e.store.Walk(ctx, func(mv module.Version) error {
		size, used, err := e.store.archiveUsage(mv)
		switch {
		case errors.Is(err, store.ErrNotExist): // removed while we walked
		case err != nil:
			e.log.Warn().Err(err).Str("archive", mv.String()).Msg("size limit: cannot stat archive; it is not counted")
		default:
			all = append(all, found{mv, size, used})
		}
		return nil
	})
	if err != nil {
		e.log.Warn().Err(err).Msg("size limit: walking the archive store failed; only what was found is counted")
	}

	e.mu.Lock()
	for _, f := range all {
		if _, ok := e.gone[f.mv]; ok {
			continue
		}
		if e.entries[f.mv] != nil {
			continue // stored during the walk: that record is newer
		}
		ent := &lruEntry{mv: f.mv, size: f.size, used: f.used, touched: f.used}
		if u, ok := e.pendingUse[f.mv]; ok && u.After(ent.used) {
			ent.used = u
		}
		e.entries[f.mv] = ent
		e.total += f.size
	}
	e.pendingUse, e.gone = nil, nil
	// Rebuild the order from the recorded uses: oversize archives coldest,
	// then least recently used.
	ordered := make([]*lruEntry, 0, len(e.entries))
	for _, ent := range e.entries {
		ordered = append(ordered, ent)
	}
	slices.SortFunc(ordered, func(a, b *lruEntry) int {
		if ao, bo := a.size > e.max, b.size > e.max; ao != bo {
			if ao {
				return 1
			}
			return -1
		}
		return b.used.Compare(a.used)
	})
	e.lru.Init()
	for _, ent := range ordered {
		ent.elem = e.lru.PushBack(ent)
	}
	e.scanned = true
	e.log.Info().Int("archives", len(e.entries)).Int64("bytes", e.total).Int64("max_bytes", e.max).
		Dur("duration_ms", time.Since(start)).Msg("archive store scanned for the size limit")
	e.mu.Unlock()
	e.enforce()
}

// pin keeps mv from being evicted until the returned func is called (any
// number of times; only the first counts).
func (e *evictor) pin(mv module.Version) (release func()) {
	e.mu.Lock()
	e.pins[mv]++
	e.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { e.unpin(mv) }) }
}

func (e *evictor) unpin(mv module.Version) {
	e.mu.Lock()
	if e.pins[mv]--; e.pins[mv] <= 0 {
		delete(e.pins, mv)
	}
	// Over the limit with nothing running: an earlier pass stopped at
	// pinned archives, or an oversize one was just let go.
	again := e.scanned && !e.evicting && e.overLocked(e.max)
	e.mu.Unlock()
	if again {
		e.enforce()
	}
}

// use records a use of mv (an Open, which pins it).
func (e *evictor) use(mv module.Version) {
	now := time.Now()
	e.mu.Lock()
	ent := e.entries[mv]
	touch := false
	switch {
	case ent != nil:
		ent.used = now
		if ent.size <= e.max {
			e.lru.MoveToFront(ent.elem)
		}
		if now.Sub(ent.touched) >= e.touchEvery {
			ent.touched, touch = now, true
		}
	case !e.scanned:
		e.pendingUse[mv] = now
	}
	e.mu.Unlock()
	if touch {
		// Pinned by the Open, so not deleted under us.
		if err := e.store.markUsed(mv, now); err != nil && !errors.Is(err, fs.ErrNotExist) {
			e.log.Debug().Err(err).Str("archive", mv.String()).Msg("size limit: cannot record archive use")
		}
	}
}

// stored records a published archive of n bytes.
func (e *evictor) stored(mv module.Version, n int64) {
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gone != nil {
		delete(e.gone, mv)
		delete(e.pendingUse, mv)
	}
	ent := e.entries[mv]
	if ent == nil {
		ent = &lruEntry{mv: mv}
		ent.elem = e.lru.PushFront(ent)
		e.entries[mv] = ent
	} else {
		e.total -= ent.size
	}
	ent.size, ent.used, ent.touched = n, now, now
	e.total += n
	if n > e.max {
		e.lru.MoveToBack(ent.elem)
		e.log.Warn().Str("archive", mv.String()).Int64("bytes", n).Int64("max_bytes", e.max).
			Msg("archive is larger than cache.max_size by itself: it is served, then evicted once nobody reads it")
	} else {
		e.lru.MoveToFront(ent.elem)
	}
}

// removed records an archive deleted other than by eviction (verify --purge).
func (e *evictor) removed(mv module.Version) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ent := e.entries[mv]; ent != nil {
		e.dropLocked(ent)
	}
	if e.gone != nil {
		e.gone[mv] = struct{}{}
		delete(e.pendingUse, mv)
	}
}

func (e *evictor) dropLocked(ent *lruEntry) {
	e.lru.Remove(ent.elem)
	delete(e.entries, ent.mv)
	e.total -= ent.size
}

// overLocked reports whether the store holds more than limit bytes, not
// counting pinned oversize archives (they go as soon as they are let go;
// evicting the rest for them would empty the cache for nothing).
func (e *evictor) overLocked(limit int64) bool {
	t := e.total
	for _, sp := range e.shared {
		t += sp.Bytes()
	}
	if t <= limit {
		return false
	}
	for mv := range e.pins {
		if ent := e.entries[mv]; ent != nil && ent.size > e.max {
			t -= ent.size
		}
	}
	return t > limit
}

// enforce runs an eviction pass if the store is over its limit and no pass
// is running. A running pass re-checks the total after each deletion, so
// bytes stored meanwhile are its business.
func (e *evictor) enforce() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.scanned || e.evicting || !e.overLocked(e.max) || time.Now().Before(e.pausedTil) {
		return
	}
	e.evicting = true
	defer func() { e.evicting = false }()
	failures := 0
	for e.overLocked(e.low) {
		// What shares the limit goes first: it is fetched again more
		// cheaply than archives.
		if e.evictSharedLocked() {
			continue
		}
		victim := e.victimLocked()
		if victim == nil {
			if e.overLocked(e.max) {
				e.log.Warn().Int64("store_bytes", e.total).Int64("max_bytes", e.max).Int("archives_in_use", len(e.pins)).
					Msg("archive store over cache.max_size, but every remaining archive is in use")
			}
			return
		}
		if err := e.evictLocked(victim); err != nil {
			// Tried again once it is the coldest again; the others go
			// meanwhile. A store that refuses every deletion (read-only)
			// costs a few attempts per pass, not a loop.
			e.log.Error().Err(err).Str("archive", victim.mv.String()).Msg("evicting archive failed")
			e.lru.MoveToFront(victim.elem)
			if failures++; failures >= maxEvictFailures {
				e.pausedTil = time.Now().Add(evictPause)
				e.log.Error().Int64("store_bytes", e.total).Int64("max_bytes", e.max).Dur("retry_in_ms", evictPause).
					Msg("archive eviction paused after repeated failures")
				return
			}
		}
		// Let pinners in between deletions.
		e.mu.Unlock()
		e.mu.Lock()
	}
}

// victimLocked is the least recently used archive nobody holds.
func (e *evictor) victimLocked() *lruEntry {
	for el := e.lru.Back(); el != nil; el = el.Prev() {
		if ent := el.Value.(*lruEntry); e.pins[ent.mv] == 0 && (e.keep == nil || !e.keep(ent.mv)) {
			return ent
		}
	}
	return nil
}

// evictLocked deletes ent's archive. It runs under e.mu so that nobody can
// pin (and then open) the archive while it goes.
func (e *evictor) evictLocked(ent *lruEntry) error {
	err := e.store.remove(ent.mv)
	if err != nil && !errors.Is(err, store.ErrNotExist) {
		return err
	}
	e.dropLocked(ent)
	if err != nil {
		e.log.Debug().Str("archive", ent.mv.String()).Msg("archive to evict was already gone")
		return nil
	}
	e.evictions++
	e.log.Info().Str("archive", ent.mv.String()).Int64("bytes", ent.size).Time("last_used", ent.used).
		Int64("store_bytes", e.total).Int64("max_bytes", e.max).Msg("archive evicted")
	return nil
}

func (e *evictor) usage() store.Usage {
	e.mu.Lock()
	defer e.mu.Unlock()
	return store.Usage{Bytes: e.total, Files: int64(len(e.entries)), Evictions: e.evictions, InUse: int64(len(e.pins))}
}

// pin keeps mv from being evicted until release is called; a no-op
// without a size limit.
func (s *Store) pin(mv module.Version) (release func()) {
	if s.evict == nil {
		return func() {}
	}
	return s.evict.pin(mv)
}

// used records a use of mv (an Open) for the least-recently-used order.
func (s *Store) used(mv module.Version) {
	if s.evict != nil {
		s.evict.use(mv)
	}
}

// Hold keeps mv from being evicted until release is called (any number of
// times; only the first counts). The archive pipeline holds an archive from
// before its store lookup until its caller has opened it, covering the gap
// between a fetch committing the archive and the waiter's Open.
func (s *Store) Hold(mv module.Version) (release func()) { return s.pin(mv) }

// Usage returns what the size limit knows of the store: all zero without a
// limit, and complete once the start-up walk is over (ScanDone).
func (s *Store) Usage() store.Usage {
	if s.evict == nil {
		return store.Usage{}
	}
	return s.evict.usage()
}

// ScanDone is closed once the start-up walk of a size-limited store is over
// (at once without a limit): nothing is evicted before.
func (s *Store) ScanDone() <-chan struct{} {
	if s.evict == nil {
		done := make(chan struct{})
		close(done)
		return done
	}
	return s.evict.scanDone
}

// SharedSpace is something else kept under the store's root that the size
// limit must cover too (the pass-through's bodies): its bytes count
// against the limit, and it gives up its oldest entry before any archive
// is evicted.
type SharedSpace interface {
	Bytes() int64
	// EvictOldest removes the least recently used entry and says how many
	// bytes that freed; ok is false when there is nothing left to remove.
	EvictOldest() (freed int64, ok bool)
}

// ShareLimit counts space against this store's size limit and evicts from
// it first; it returns what space should call after it grew, so the limit
// is enforced then too. Without a size limit it does nothing.
func (s *Store) ShareLimit(space SharedSpace) (grew func()) {
	if s.evict == nil {
		return func() {}
	}
	s.evict.mu.Lock()
	s.evict.shared = append(s.evict.shared, space)
	s.evict.mu.Unlock()
	return s.evict.enforce
}

// evictSharedLocked evicts one entry of what shares the limit, if any has
// one left.
func (e *evictor) evictSharedLocked() bool {
	for _, sp := range e.shared {
		if _, ok := sp.EvictOldest(); ok {
			return true
		}
	}
	return false
}
