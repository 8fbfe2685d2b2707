package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"moonbit-registry/module"
	"moonbit-registry/store"
)

// ErrEvictedDuringRun reports an archive EnsureAll stored that the size
// limit evicted again before the run ended.
var ErrEvictedDuringRun = errors.New("evicted again to honour cache.max_size: the selection is larger than the limit")

// BatchEvent reports one archive finished by EnsureAll.
type BatchEvent struct {
	Archive module.Version
	Outcome Outcome // OutcomeHit: was cached; OutcomeMiss: fetched now
	Bytes   int64   // archive size (cached or fetched)
	Err     error
}

// BatchResult sums up an EnsureAll run.
type BatchResult struct {
	Selected int
	Cached   int   // already in the store
	Fetched  int   // fetched and verified now
	Bytes    int64 // bytes fetched now
	Failed   []BatchEvent
}

// EnsureAll makes sure the store holds every archive in mvs, running at
// most concurrency Ensure calls at once and carrying on past failures. It is
// the mirror command's loop; each archive goes through the same
// fetch-verify-store pipeline as a proxy miss. progress, if not nil, is
// called once per archive, from one goroutine at a time, as each ends; with
// a store that batches durability (batcher), the result alone says what
// is stored: a fetch reported by progress that the final flush could not
// make durable is counted failed there.
func (c *Cache) EnsureAll(ctx context.Context, mvs []module.Version, concurrency int, progress func(BatchEvent)) BatchResult {
	if concurrency < 1 {
		concurrency = 1
	}
	res := BatchResult{Selected: len(mvs)}
	evictionsBefore := c.Stats().Evictions
	flush := func() error { return nil }
	if b, ok := c.store.(store.Batcher); ok {
		ctx, flush = b.Batch(ctx)
	}
	outcomes := make(map[module.Version]BatchEvent, len(mvs)) // successes
	var mu sync.Mutex
	work := make(chan module.Version)
	var wg sync.WaitGroup
	for range min(concurrency, max(len(mvs), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for mv := range work {
				ev := BatchEvent{Archive: mv}
				ev.Outcome, ev.Err = c.Ensure(ctx, mv)
				if ev.Err == nil {
					ev.Bytes, ev.Err = c.size(ctx, mv)
				}
				mu.Lock()
				switch {
				case ev.Err != nil:
					res.Failed = append(res.Failed, ev)
				case ev.Outcome == OutcomeHit:
					res.Cached++
					outcomes[mv] = ev
				default:
					res.Fetched++
					res.Bytes += ev.Bytes
					outcomes[mv] = ev
				}
				if progress != nil {
					progress(ev)
				}
				mu.Unlock()
			}
		}()
	}
	sent := 0
	for _, mv := range mvs {
		if ctx.Err() != nil {
			break
		}
		select {
		case work <- mv:
			sent++
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	// Nothing fetched counts as stored before the store made it durable.
	if err := flush(); err != nil {
		for mv, ev := range outcomes {
			if ev.Outcome == OutcomeMiss {
				res.Fetched--
				res.Bytes -= ev.Bytes
				delete(outcomes, mv)
				res.Failed = append(res.Failed, BatchEvent{Archive: mv, Outcome: ev.Outcome, Err: err})
			}
		}
	}
	// With a size limit, archives of this very run may have been evicted to
	// make room for later ones: the run must not look complete then.
	if c.Stats().Evictions != evictionsBefore {
		for mv, ev := range outcomes {
			if c.Cached(context.WithoutCancel(ctx), mv) {
				continue
			}
			if ev.Outcome == OutcomeHit {
				res.Cached--
			} else {
				res.Fetched--
				res.Bytes -= ev.Bytes
			}
			res.Failed = append(res.Failed, BatchEvent{Archive: mv, Outcome: ev.Outcome, Err: ErrEvictedDuringRun})
		}
	}
	// What was never started because ctx ended counts as failed, so a run cut
	// short can never look complete.
	for _, mv := range mvs[sent:] {
		res.Failed = append(res.Failed, BatchEvent{Archive: mv, Err: fmt.Errorf("not started: %w", context.Cause(ctx))})
	}
	slices.SortFunc(res.Failed, func(a, b BatchEvent) int { return strings.Compare(a.Archive.String(), b.Archive.String()) })
	return res
}

func (c *Cache) size(ctx context.Context, mv module.Version) (int64, error) {
	if st, ok := c.store.(store.Statter); ok {
		info, err := st.Stat(ctx, mv)
		if err != nil {
			return 0, fmt.Errorf("stat %s: %w", mv, err)
		}
		return info.Size, nil
	}
	obj, err := c.store.Open(ctx, mv)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", mv, err)
	}
	defer obj.Close()
	return obj.Info().Size, nil
}

// VerifyProblem is one thing Verify found wrong.
type VerifyProblem struct {
	Archive module.Version
	// Kind is "missing" (expected but not stored), "mismatch" (stored bytes
	// do not hash to the index checksum), "orphan" (stored but not in the
	// index), "unreadable", or "unverifiable" (the index entry is malformed;
	// never purged).
	Kind   string
	Detail string
	Purged bool
}

// VerifyResult sums up a Verify run.
type VerifyResult struct {
	Checked  int
	Problems []VerifyProblem
}

// Verify re-hashes stored archives against the index. With expected == nil
// it checks everything in the store; otherwise it checks exactly those
// archives and reports the ones not stored as missing. With purge, archives
// that are mismatched, orphaned or unreadable are deleted, so the next
// request fetches them again.
func (c *Cache) Verify(ctx context.Context, expected []module.Version, purge bool) (VerifyResult, error) {
	var res VerifyResult
	check := func(mv module.Version, mustExist bool) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		res.Checked++
		p, err := c.verifyOne(ctx, mv, mustExist)
		if err != nil || p == nil {
			return err
		}
		kept := c.keep != nil && c.keep(mv)
		if kept && purge {
			p.Detail += " (kept: a private archive is never purged; publish it again to repair it)"
		}
		if purge && !kept && p.Kind != "missing" && p.Kind != "unverifiable" {
			if err := c.store.Delete(ctx, mv); err != nil && !errors.Is(err, store.ErrNotExist) {
				return fmt.Errorf("purge %s: %w", mv, err)
			}
			p.Purged = true
		}
		res.Problems = append(res.Problems, *p)
		return nil
	}
	if expected == nil {
		var all []module.Version
		if err := c.store.Walk(ctx, func(mv module.Version) error { all = append(all, mv); return nil }); err != nil {
			return res, fmt.Errorf("walk store: %w", err)
		}
		expected = all
		slices.SortFunc(expected, func(a, b module.Version) int { return strings.Compare(a.String(), b.String()) })
		for _, mv := range expected {
			if err := check(mv, false); err != nil {
				return res, err
			}
		}
		return res, nil
	}
	for _, mv := range expected {
		if err := check(mv, true); err != nil {
			return res, err
		}
	}
	return res, nil
}

func (c *Cache) verifyOne(ctx context.Context, mv module.Version, mustExist bool) (*VerifyProblem, error) {
	want, ok, err := c.index.Checksum(ctx, mv.Module, mv.Version)
	switch {
	case errors.Is(err, module.ErrIndexUnavailable) || ctx.Err() != nil:
		return nil, fmt.Errorf("index lookup %s: %w", mv, err)
	case err != nil:
		// One bad index line (a malformed checksum) must not stop the
		// check of all the others.
		return &VerifyProblem{Archive: mv, Kind: "unverifiable", Detail: err.Error()}, nil
	}
	return checkStored(ctx, c.store, mv, want, ok, mustExist), nil
}

// checkStored re-hashes mv's stored archive against want (inIndex false:
// the index does not list it). It returns nil when all is well, or when the
// archive is not stored and need not be.
func checkStored(ctx context.Context, s store.Store, mv module.Version, want string, inIndex, mustExist bool) *VerifyProblem {
	obj, err := s.Open(ctx, mv)
	if errors.Is(err, store.ErrNotExist) {
		if mustExist {
			return &VerifyProblem{Archive: mv, Kind: "missing", Detail: "not cached"}
		}
		return nil // removed while we walked
	}
	if err != nil {
		return &VerifyProblem{Archive: mv, Kind: "unreadable", Detail: err.Error()}
	}
	defer obj.Close()
	if !inIndex {
		return &VerifyProblem{Archive: mv, Kind: "orphan", Detail: "not in the index"}
	}
	h := sha256.New()
	if _, err := io.Copy(h, obj); err != nil {
		return &VerifyProblem{Archive: mv, Kind: "unreadable", Detail: err.Error()}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return &VerifyProblem{Archive: mv, Kind: "mismatch", Detail: fmt.Sprintf("index sha256 %s, stored %s", want, got)}
	}
	return nil
}

// Changed is a version whose index line changed, with its checksum now.
type Changed struct {
	Archive module.Version
	SHA256  string
}

// DropStale re-checks the stored archives of versions whose index line
// changed and deletes those that no longer match their checksum, so a
// republished checksum is never answered with the old bytes. It needs only
// the store, so the index can call it after each sync before any pipeline
// exists. Failures are logged: the next sync or a verify run tries again.
func DropStale(ctx context.Context, s store.Store, changed []Changed, log zerolog.Logger) {
	for _, ch := range changed {
		if err := ctx.Err(); err != nil {
			return
		}
		p := checkStored(ctx, s, ch.Archive, ch.SHA256, true, false)
		if p == nil {
			continue
		}
		if err := s.Delete(ctx, ch.Archive); err != nil && !errors.Is(err, store.ErrNotExist) {
			log.Error().Err(err).Str("archive", ch.Archive.String()).Msg("index entry changed: cannot drop the cached archive")
			continue
		}
		log.Warn().Str("archive", ch.Archive.String()).Str("problem", p.Kind).Str("detail", p.Detail).
			Msg("index entry changed: dropped the cached archive; it is fetched again on demand")
	}
}

// Cached reports whether the store holds mv (for dry runs and reports).
func (c *Cache) Cached(ctx context.Context, mv module.Version) bool {
	ok, err := c.has(ctx, mv)
	return ok && err == nil
}
