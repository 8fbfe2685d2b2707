package app

import (
	"context"
	"fmt"
	"io"

	"github.com/rs/zerolog"

	"moonbit-registry/cache"
	"moonbit-registry/config"
	"moonbit-registry/indexsync"
)

// MirrorRequest is what `mirror` was asked to fetch.
type MirrorRequest struct {
	Patterns []string // none: --from, or else [mirror] packages
	From     string   // a moon.mod.json whose dependencies to mirror
	Select   indexsync.SelectOptions
	Offline  bool // use the local index mirror as it is
	DryRun   bool // report, fetch nothing
	// Progress, if set, is told how many archives the run fetches and
	// returns what sees each one as it is done and what ends the display.
	Progress func(total int) (event func(cache.BatchEvent), done func())
}

// ErrIncomplete: a mirror or verify run found something missing or wrong;
// the report says what (exit status 1).
type ErrIncomplete struct{ Msg string }

func (e ErrIncomplete) Error() string { return e.Msg }

// Mirror fetches a selection into the store and writes the report to out.
// It returns nil only when everything selected is cached and verified and
// no dependency is unresolved; otherwise an ErrIncomplete (or a usage or
// sync error).
func Mirror(ctx context.Context, cfg config.Config, log zerolog.Logger, req MirrorRequest, out io.Writer) error {
	if req.From != "" && len(req.Patterns) > 0 {
		return usageErrorf("give either --from or patterns, not both")
	}
	patterns := req.Patterns
	if req.From == "" && len(patterns) == 0 {
		patterns = cfg.Mirror.Packages
		if len(patterns) == 0 {
			return usageErrorf("nothing to mirror: give patterns (e.g. moonbitlang/x), --from moon.mod.json, or set [mirror] packages")
		}
	}
	// This process's own fetch cap must not undercut mirror.concurrency.
	cfg.Cache.MaxConcurrentFetches = max(cfg.Cache.MaxConcurrentFetches, cfg.Mirror.Concurrency)
	r, err := Open(cfg, Use{Fetch: true, Evict: !req.DryRun}, log)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := r.syncFirst(ctx, req.Offline); err != nil {
		return err
	}
	var sel indexsync.Selection
	if req.From != "" {
		deps, err := indexsync.ReadProjectDeps(req.From)
		if err != nil {
			return usageErrorf("--from: %w", err)
		}
		if sel, err = indexsync.SelectDeps(ctx, r.Index, deps); err != nil {
			return err
		}
	} else if sel, err = r.selectPatterns(ctx, patterns, req.Select); err != nil {
		return err
	}
	return r.mirrorSelection(ctx, sel, req, out)
}

// mirrorSelection fetches sel and reports; see Mirror.
func (r *Registry) mirrorSelection(ctx context.Context, sel indexsync.Selection, req MirrorRequest, out io.Writer) error {
	unresolved := 0
	for _, s := range sel.Skipped {
		kind := "skipped"
		if s.Unresolved {
			kind = "unresolved"
			unresolved++
		}
		fmt.Fprintf(out, "%s: %s (required by %s): %s\n", kind, s.Module, s.From, s.Reason)
	}
	mvs := sel.Archives()
	if req.DryRun {
		for _, mv := range mvs {
			state := "to fetch"
			if r.Archives.Cached(ctx, mv) {
				state = "cached"
			}
			fmt.Fprintf(out, "%s\t%s\n", mv, state)
		}
		fmt.Fprintf(out, "%d archives selected\n", len(mvs))
		return nil
	}
	var event func(cache.BatchEvent)
	if req.Progress != nil {
		var done func()
		event, done = req.Progress(len(mvs))
		defer done()
	}
	res := r.Archives.EnsureAll(ctx, mvs, r.Config.Mirror.Concurrency, event)
	fmt.Fprintf(out, "selected %d, already cached %d, fetched %d (%s), failed %d\n",
		res.Selected, res.Cached, res.Fetched, HumanBytes(res.Bytes), len(res.Failed))
	for _, f := range res.Failed {
		fmt.Fprintf(out, "failed: %s: %v\n", f.Archive, f.Err)
	}
	if len(res.Failed) > 0 || unresolved > 0 {
		return ErrIncomplete{fmt.Sprintf("mirror incomplete: %d archives failed, %d dependencies unresolved", len(res.Failed), unresolved)}
	}
	return nil
}

// HumanBytes writes a byte count in binary units.
func HumanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
