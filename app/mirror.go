package app

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/rs/zerolog"

	"moonbit-registry/cache"
	"moonbit-registry/config"
	"moonbit-registry/internal/human"
	"moonbit-registry/manifest"
	"moonbit-registry/resolve"
)

// MirrorRequest is what `mirror` was asked to fetch.
type MirrorRequest struct {
	Patterns []string // none: --from, or else [mirror] packages
	From     string   // a moon.mod, moon.mod.json or moon.work (or its directory) whose dependencies to mirror
	Select   resolve.SelectOptions
	Offline  bool // use the local index mirror as it is
	DryRun   bool // report, fetch nothing
	// NoSymbols leaves symbols.zip out (it is fetched by default, so that
	// moon update works offline).
	NoSymbols bool
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
			return usageErrorf("nothing to mirror: give patterns (e.g. moonbitlang/x), --from moon.mod, or set [mirror] packages")
		}
	}
	// A project that cannot be read is refused before anything is synced.
	var project []manifest.Require
	if req.From != "" {
		var err error
		if project, err = manifest.ReadProject(req.From); err != nil {
			return usageErrorf("--from: %w", err)
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
	var sel resolve.Selection
	if req.From != "" {
		if sel, err = resolve.SelectDeps(ctx, r.Index, project); err != nil {
			return err
		}
	} else if sel, err = r.selectPatterns(ctx, patterns, req.Select); err != nil {
		return err
	}
	return r.mirrorSelection(ctx, sel, req, out)
}

// mirrorSelection fetches sel (and symbols.zip unless asked not to) and
// reports; see Mirror.
func (r *Registry) mirrorSelection(ctx context.Context, sel resolve.Selection, req MirrorRequest, out io.Writer) error {
	reportSkipped(out, sel.Skipped)
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
		reportUnresolved(out, sel.Skipped)
		return nil
	}
	var event func(cache.BatchEvent)
	if req.Progress != nil {
		var done func()
		event, done = req.Progress(len(mvs))
		defer done()
	}
	res := r.Archives.EnsureAll(ctx, mvs, r.Config.Mirror.Concurrency, event)
	symbolsErr := error(nil)
	if !req.NoSymbols {
		symbolsErr = r.mirrorSymbols(ctx, out)
	}
	fmt.Fprintf(out, "selected %d, already cached %d, fetched %d (%s), failed %d\n",
		res.Selected, res.Cached, res.Fetched, human.Bytes(res.Bytes), len(res.Failed))
	for _, f := range res.Failed {
		fmt.Fprintf(out, "failed: %s: %v\n", f.Archive, f.Err)
	}
	unresolved := reportUnresolved(out, sel.Skipped)
	if len(res.Failed) > 0 || unresolved > 0 || symbolsErr != nil {
		msg := fmt.Sprintf("mirror incomplete: %d archives failed, %d dependencies unresolved", len(res.Failed), unresolved)
		if symbolsErr != nil {
			msg += ", symbols.zip not cached"
		}
		return ErrIncomplete{msg}
	}
	return nil
}

// reportSkipped writes one line per reason for the dependencies (and
// --latest versions) that were deliberately not taken: the modules, each
// once, with what required them.
func reportSkipped(out io.Writer, skipped []resolve.Skipped) {
	for _, g := range groupSkipped(skipped, false, func(s resolve.Skipped) string { return s.Reason }) {
		fmt.Fprintf(out, "skipped (%s): %s\n", g.key, strings.Join(g.items, ", "))
	}
}

// reportUnresolved names every dependency the registry cannot satisfy once,
// with its reasons and what required it, and returns how many there are.
func reportUnresolved(out io.Writer, skipped []resolve.Skipped) int {
	groups := groupSkipped(skipped, true, func(s resolve.Skipped) string { return s.Module })
	if len(groups) > 0 {
		fmt.Fprintf(out, "%d unresolved dependencies (a project that needs them cannot build from this mirror):\n", len(groups))
	}
	for _, g := range groups {
		fmt.Fprintf(out, "unresolved: %s\n", g.summary)
	}
	return len(groups)
}

type skipGroup struct {
	key     string
	items   []string // "module (required by a, b)", for reason groups
	summary string   // "module: reasons (required by a, b)", for module groups
}

// groupSkipped groups the skipped entries (unresolved ones or the others)
// by key, in order of first appearance.
func groupSkipped(skipped []resolve.Skipped, unresolved bool, key func(resolve.Skipped) string) []skipGroup {
	type acc struct {
		modules []string            // in order of first appearance
		from    map[string][]string // module -> requirers
		reasons []string
	}
	var order []string
	groups := map[string]*acc{}
	for _, s := range skipped {
		if s.Unresolved != unresolved {
			continue
		}
		k := key(s)
		g := groups[k]
		if g == nil {
			g = &acc{from: map[string][]string{}}
			groups[k] = g
			order = append(order, k)
		}
		if _, ok := g.from[s.Module]; !ok {
			g.modules = append(g.modules, s.Module)
		}
		if s.From != "" && !slices.Contains(g.from[s.Module], s.From) {
			g.from[s.Module] = append(g.from[s.Module], s.From)
		}
		if !slices.Contains(g.reasons, s.Reason) {
			g.reasons = append(g.reasons, s.Reason)
		}
	}
	out := make([]skipGroup, 0, len(order))
	for _, k := range order {
		g := groups[k]
		sg := skipGroup{key: k}
		for _, m := range g.modules {
			sg.items = append(sg.items, m+requiredBy(g.from[m]))
		}
		if unresolved {
			sg.summary = k + ": " + strings.Join(g.reasons, "; ") + requiredBy(g.from[k])
		}
		out = append(out, sg)
	}
	return out
}

// requiredBy is " (required by a, b, c and 2 more)", or "" for none.
func requiredBy(from []string) string {
	if len(from) == 0 {
		return ""
	}
	return " (required by " + shortList(from, 3) + ")"
}

// shortList joins the first n items and says how many more there are.
func shortList(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:n], ", ") + fmt.Sprintf(" and %d more", len(items)-n)
}
