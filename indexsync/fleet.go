package indexsync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	// PutBundle stores the bundle file at path as commit's, and may drop
	// the bundle of the tip it replaced (old, "" for none).
	PutBundle(ctx context.Context, commit, old, path string) error
	// Bundle writes commit's bundle to the file dst; found is false when
	// no replica has stored one (yet).
	Bundle(ctx context.Context, commit, dst string) (found bool, err error)
}

// maxTipRaces bounds how often a sync retries when other replicas keep
// moving the tip under it.
const maxTipRaces = 5

// agreement is where a sync may move main: target, which the fleet's tip
// holds; advanced is set when this sync moved the tip (from oldTip), so it
// publishes the bundle.
type agreement struct {
	target   string
	advanced bool
	oldTip   string
}

// agree settles what main moves to when upstream gave next ("" when it
// could not be reached) in the repository at dir: next if it moves the
// fleet's tip forward (or the tip is new), the tip if upstream as fetched
// here is behind it. A tip this repository does not have comes from the
// bundle another replica stored. Upstream history that was rewritten is
// followed, as a single mirror does.
func (m *Mirror) agree(ctx context.Context, dir, next string) (agreement, error) {
	f := m.opts.Fleet
	for range maxTipRaces {
		tip, version, err := f.Tip(ctx)
		if err != nil {
			return agreement{}, fmt.Errorf("read the fleet's index tip: %w", err)
		}
		switch {
		case next == "" && tip == "":
			return agreement{}, errors.New("upstream is unreachable and no replica has published an index yet")
		case next == "":
			if err := m.haveOrBundle(ctx, dir, tip); err != nil {
				return agreement{}, err
			}
			return agreement{target: tip}, nil
		case tip == next:
			return agreement{target: next}, nil
		case tip == "":
			ok, err := f.Advance(ctx, "", next)
			if err != nil {
				return agreement{}, fmt.Errorf("publish the fleet's index tip: %w", err)
			}
			if ok {
				return agreement{target: next, advanced: true}, nil
			}
			continue
		}
		if err := m.haveOrBundle(ctx, dir, tip); err != nil {
			return agreement{}, err
		}
		if back, err := m.isAncestorIn(ctx, dir, next, tip); err != nil {
			return agreement{}, err
		} else if back {
			return agreement{target: tip}, nil // this replica saw upstream before the one that moved the tip
		}
		if fwd, err := m.isAncestorIn(ctx, dir, tip, next); err != nil {
			return agreement{}, err
		} else if !fwd {
			m.log.Error().Str("tip", tip).Str("upstream", next).
				Msg("UPSTREAM INDEX HISTORY WAS REWRITTEN: moving the fleet's tip to it; clients will have to re-clone")
		}
		ok, err := f.Advance(ctx, version, next)
		if err != nil {
			return agreement{}, fmt.Errorf("advance the fleet's index tip: %w", err)
		}
		if ok {
			return agreement{target: next, advanced: true, oldTip: tip}, nil
		}
	}
	return agreement{}, errors.New("the fleet's index tip kept moving under this sync; the next one tries again")
}

// haveOrBundle makes sure the repository at dir holds commit, fetching it
// from the bundle another replica stored when it does not.
func (m *Mirror) haveOrBundle(ctx context.Context, dir, commit string) error {
	if m.hasCommit(ctx, dir, commit) {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(m.opts.Dir), m.tempPrefix()+"bundle-*")
	if err != nil {
		return err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	found, err := m.opts.Fleet.Bundle(ctx, commit, tmp.Name())
	if err != nil {
		return fmt.Errorf("fetch the fleet's index bundle: %w", err)
	}
	if !found {
		return fmt.Errorf("the fleet's index is at %s, which upstream did not give this replica and no replica has stored a bundle of yet", commit)
	}
	if _, err := m.git(ctx, dir, nil, "fetch", "--quiet", "--no-tags", tmp.Name(), "refs/heads/"+localBranch); err != nil {
		return fmt.Errorf("fetch from the fleet's bundle: %w", err)
	}
	if !m.hasCommit(ctx, dir, commit) {
		return fmt.Errorf("the fleet's bundle does not hold %s", commit)
	}
	return nil
}

func (m *Mirror) hasCommit(ctx context.Context, dir, commit string) bool {
	_, err := m.git(ctx, dir, nil, "cat-file", "-e", commit+"^{commit}")
	return err == nil
}

// publish stores a bundle of main (at a tip this replica set) for the
// replicas that cannot reach upstream. Failing only costs them upstream.
func (m *Mirror) publish(ctx context.Context, a agreement) {
	if !a.advanced {
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(m.opts.Dir), m.tempPrefix()+"bundle-*")
	if err == nil {
		tmp.Close()
		defer os.Remove(tmp.Name())
		// Into an existing file: git bundle create writes it anew.
		_, err = m.git(ctx, m.opts.Dir, nil, "bundle", "create", "--quiet", tmp.Name(), "refs/heads/"+localBranch)
	}
	if err == nil {
		err = m.opts.Fleet.PutBundle(ctx, a.target, a.oldTip, tmp.Name())
	}
	if err != nil {
		m.log.Warn().Err(err).Str("commit", a.target).Msg("cannot store the index bundle for the fleet; replicas without upstream wait for the next one")
	}
}

// CatchUp brings the mirror to the fleet's tip when another replica moved
// it, before a client is answered: from upstream, or from the bundle that
// replica stored. Without a Fleet it does nothing. An error means this
// replica must not answer (503): it would serve an index older than one a
// client may already have.
func (m *Mirror) CatchUp(ctx context.Context) error {
	if m.opts.Fleet == nil {
		return nil
	}
	tip, _, err := m.opts.Fleet.Tip(ctx)
	if err != nil {
		return fmt.Errorf("read the fleet's index tip: %w", err)
	}
	if tip == "" || tip == m.Commit() {
		return nil
	}
	if _, err := m.Sync(ctx); err != nil {
		return err
	}
	if cur := m.Commit(); cur != tip {
		if ok, err := m.isAncestorIn(ctx, m.opts.Dir, tip, cur); err != nil || !ok {
			return fmt.Errorf("the index mirror (%s) is behind the fleet's tip %s", cur, tip)
		}
	}
	return nil
}
