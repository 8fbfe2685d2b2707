package indexsync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"moonbit-registry/gitrepo"

	"github.com/rs/zerolog"
)

// Fleet is the index state replicas that share a store agree on (a
// fleet.IndexTip): one tip commit that only ever moves forward, and a git
// bundle of it for replicas that cannot reach upstream. With a Fleet, a
// mirror keeps full history (so any replica can answer a client that
// fetched from another), moves its main only to a commit the tip has
// held, and catches up to the tip before serving.
type Fleet interface {
	// Tip is the fleet's commit ("" before the first) and a version to
	// advance from.
	Tip(ctx context.Context) (commit, version string, err error)
	// Advance moves the tip to commit if it is still at version ("": there
	// is none yet); ok is false when another replica moved it first.
	Advance(ctx context.Context, version, commit string) (ok bool, err error)
	// PutBundle stores the bundle file at path as commit's; DropBundle
	// removes commit's (a tip replaced, or one that never became the tip).
	PutBundle(ctx context.Context, commit, path string) error
	DropBundle(ctx context.Context, commit string) error
	// Bundle writes commit's bundle to the file dst; found is false when
	// no replica has stored one (yet).
	Bundle(ctx context.Context, commit, dst string) (found bool, err error)
}

// agreement settles with the other replicas of a fleet the commit main
// moves to (agree), passing the history along as bundles in the store, and
// remembers the last catch-up to a tip that failed (see Mirror.CatchUp).
type agreement struct {
	fleet Fleet
	root  string // the mirror's Dir: bundle files are made beside it
	git   *gitrepo.Runner
	comp  *composer
	log   zerolog.Logger

	catchUpMu     sync.Mutex
	catchUpFailed catchUpFailure
}

// maxTipRaces bounds how often a sync retries when other replicas keep
// moving the tip under it.
const maxTipRaces = 5

// bundleRef is the ref a bundle carries the tip under. Hidden from clients
// (uploadpack.hideRefs), so it is never advertised.
const bundleRef = "refs/fleet/tip"

// agree settles what main moves to, given what the sync fetched (nothing
// of upstream's when it could not be reached), in the repository at dir:
// the commit built on the fleet's tip (see target: upstream's commit
// itself without an Overlay) if it moves the tip forward (or there is no
// tip yet), the tip if it already holds as much. A tip this repository does not have comes
// from the bundle another replica stored. Upstream history that was
// rewritten is followed, as a single mirror does.
func (a *agreement) agree(ctx context.Context, dir string, fetched heads) (string, error) {
	f := a.fleet
	bundled := "" // the commit whose bundle this sync stored: dropped unless it becomes the tip
	settle := func(target string) string {
		if bundled != "" && target != bundled {
			a.dropBundle(ctx, bundled)
		}
		return target
	}
	for range maxTipRaces {
		tip, version, err := f.Tip(ctx)
		if err != nil {
			return settle(""), fmt.Errorf("read the fleet's index tip: %w", err)
		}
		if fetched[""] == "" && tip == "" {
			return settle(""), errors.New("upstream is unreachable and no replica has published an index yet")
		}
		base := tip
		if tip != "" {
			if err := a.haveOrBundle(ctx, dir, tip); err != nil {
				return settle(""), err
			}
		} else if c, err := a.git.Commit(ctx, dir, "refs/heads/"+localBranch); err == nil {
			base = c // the first tip: build on what this replica served
		}
		next, err := a.comp.target(ctx, dir, fetched, base)
		if err != nil {
			return settle(""), err
		}
		if next == tip {
			return settle(tip), nil
		}
		if tip != "" {
			if back, err := a.git.IsAncestor(ctx, dir, next, tip); err != nil {
				return settle(""), err
			} else if back {
				return settle(tip), nil // this replica saw upstream before the one that moved the tip
			}
			if fwd, err := a.git.IsAncestor(ctx, dir, tip, next); err != nil {
				return settle(""), err
			} else if !fwd {
				a.log.Error().Str("tip", tip).Str("upstream", next).
					Msg("UPSTREAM INDEX HISTORY WAS REWRITTEN: moving the fleet's tip to it; clients will have to re-clone")
			}
		}
		// The bundle first, then the tip: a replica that reads the new tip
		// finds its bundle.
		if bundled != next {
			if bundled != "" {
				a.dropBundle(ctx, bundled)
				bundled = ""
			}
			if err := a.putBundle(ctx, dir, next); err != nil {
				a.log.Warn().Err(err).Str("commit", next).Msg("cannot store the index bundle for the fleet; replicas without upstream wait for the next one")
			} else {
				bundled = next
			}
		}
		ok, err := f.Advance(ctx, version, next)
		if err != nil {
			return settle(""), fmt.Errorf("advance the fleet's index tip: %w", err)
		}
		if ok {
			if tip != "" {
				a.dropBundle(ctx, tip)
			}
			return settle(next), nil
		}
	}
	return settle(""), errors.New("the fleet's index tip kept moving under this sync; the next one tries again")
}

// putBundle stores a bundle of commit (all its history, under bundleRef)
// for the replicas that cannot reach upstream.
func (a *agreement) putBundle(ctx context.Context, dir, commit string) error {
	if _, err := a.git.Run(ctx, dir, nil, "update-ref", bundleRef, commit); err != nil {
		return err
	}
	tmp, done, err := a.bundleFile()
	if err != nil {
		return err
	}
	defer done()
	// Into an existing file: git bundle create writes it anew.
	if _, err := a.git.Run(ctx, dir, nil, "bundle", "create", "--quiet", tmp, bundleRef); err != nil {
		return err
	}
	return a.fleet.PutBundle(ctx, commit, tmp)
}

// bundleFile is an empty temporary file beside the mirror for a bundle;
// done removes it.
func (a *agreement) bundleFile() (path string, done func(), err error) {
	f, err := os.CreateTemp(filepath.Dir(a.root), tempPrefix(a.root)+"bundle-*")
	if err != nil {
		return "", nil, fmt.Errorf("bundle: %w", err)
	}
	f.Close()
	return f.Name(), func() { os.Remove(f.Name()) }, nil
}

func (a *agreement) dropBundle(ctx context.Context, commit string) {
	if err := a.fleet.DropBundle(ctx, commit); err != nil {
		a.log.Warn().Err(err).Str("commit", commit).Msg("cannot remove an index bundle that is no longer the fleet's")
	}
}

// haveOrBundle makes sure the repository at dir holds commit, fetching it
// from the bundle another replica stored when it does not.
func (a *agreement) haveOrBundle(ctx context.Context, dir, commit string) error {
	if a.git.HasCommit(ctx, dir, commit) {
		return nil
	}
	tmp, done, err := a.bundleFile()
	if err != nil {
		return err
	}
	defer done()
	found, err := a.fleet.Bundle(ctx, commit, tmp)
	if err != nil {
		return fmt.Errorf("fetch the fleet's index bundle: %w", err)
	}
	if !found {
		return fmt.Errorf("the fleet's index is at %s, which upstream did not give this replica and no replica has stored a bundle of yet", commit)
	}
	if _, err := a.git.Run(ctx, dir, nil, "fetch", "--quiet", "--no-tags", tmp, bundleRef); err != nil {
		return fmt.Errorf("fetch from the fleet's bundle: %w", err)
	}
	if !a.git.HasCommit(ctx, dir, commit) {
		return fmt.Errorf("the fleet's bundle does not hold %s", commit)
	}
	return nil
}

// catchUpRetry is how long a failed catch-up to a tip is not tried again.
const catchUpRetry = 2 * time.Second

func (a *agreement) recentCatchUpFailure(tip string) error {
	a.catchUpMu.Lock()
	defer a.catchUpMu.Unlock()
	f := a.catchUpFailed
	if f.tip == tip && time.Since(f.at) < catchUpRetry {
		return f.err
	}
	return nil
}

func (a *agreement) noteCatchUpFailure(tip string, err error) {
	a.catchUpMu.Lock()
	a.catchUpFailed = catchUpFailure{tip: tip, at: time.Now(), err: err}
	a.catchUpMu.Unlock()
}

// catchUpFailure is the last catch-up that did not reach its tip.
type catchUpFailure struct {
	tip string
	at  time.Time
	err error
}

// CatchUp brings the mirror to the fleet's tip when another replica moved
// it, before a client is answered: from upstream, or from the bundle that
// replica stored. Without a Fleet it does nothing. An error means this
// replica must not answer (503): it would serve an index older than one a
// client may already have. The catch-up runs on even if the caller leaves;
// after a failed one, callers are answered at once for a moment instead
// of each starting another.
func (m *Mirror) CatchUp(ctx context.Context) error {
	if m.fleet == nil {
		return nil
	}
	tip, _, err := m.fleet.fleet.Tip(ctx)
	if err != nil {
		return fmt.Errorf("read the fleet's index tip: %w", err)
	}
	if tip == "" || tip == m.Commit() {
		return nil
	}
	if err := m.fleet.recentCatchUpFailure(tip); err != nil {
		return err
	}
	var syncErr error
	select {
	case syncErr = <-m.detachedSync(ctx):
	case <-ctx.Done():
		return ctx.Err()
	}
	cur := m.Commit()
	if cur == tip {
		return nil
	}
	if ok, err := m.git.IsAncestor(ctx, m.opts.Dir, tip, cur); err == nil && ok {
		return nil // the tip moved on and this replica with it
	}
	err = fmt.Errorf("the index mirror (%s) is behind the fleet's tip %s", cur, tip)
	if syncErr != nil {
		err = fmt.Errorf("%w: %w", err, syncErr)
	}
	m.fleet.noteCatchUpFailure(tip, err)
	return err
}
