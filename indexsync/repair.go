package indexsync

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"moonbit-registry/gitrepo"

	"github.com/rs/zerolog"
)

// clearStaleLocks removes the lock files (lockFiles) a git killed
// mid-write (a crash, a power loss) leaves in the mirror; while they exist
// every later git run that needs them fails. It runs with the cross-process sync lock
// held, so no git of this program (in any process) is using the mirror.
func clearStaleLocks(dir string, log zerolog.Logger) {
	for _, name := range lockFiles {
		p := filepath.Join(dir, ".git", filepath.FromSlash(name))
		err := os.Remove(p)
		switch {
		case err == nil:
			log.Warn().Str("file", p).Msg("removed a stale git lock left by an interrupted git run")
		case !errors.Is(err, fs.ErrNotExist):
			log.Warn().Err(err).Str("file", p).Msg("cannot remove a stale git lock")
		}
	}
}

// corrupt reports whether the repository at dir is damaged (an object
// file emptied by a power loss, a broken ref): what a failed update is
// checked for before the mirror is rebuilt.
func corrupt(ctx context.Context, git *gitrepo.Runner, dir string) bool {
	_, err := git.Run(ctx, dir, nil, "fsck", "--connectivity-only", "--no-dangling", "--no-progress")
	return err != nil && ctx.Err() == nil
}

// rebuild clones a fresh mirror beside the damaged one and swaps it in;
// clients are served from the old one until the swap, which happens with
// readers held off. The damaged repository is removed afterwards.
func (m *Mirror) rebuild(ctx context.Context, cause error) (Changes, error) {
	start := time.Now()
	m.log.Error().Err(cause).Str("dir", m.opts.Dir).Msg("index mirror repository is damaged; rebuilding it beside the old one")
	old := m.mainOnDisk(ctx)
	// A Dir that is a mount point cannot be renamed: the new mirror is
	// built inside it and the contents are swapped instead.
	mount := isMountPoint(m.opts.Dir)
	parent := filepath.Dir(m.opts.Dir)
	if mount {
		parent = m.opts.Dir
	}
	tmp, commit, err := m.cloneInto(ctx, parent)
	if tmp != "" {
		defer os.RemoveAll(tmp) // a no-op once moved into place
	}
	if err != nil {
		return Changes{}, fmt.Errorf("rebuilding the damaged mirror (after %v): %w", cause, err)
	}
	trash := tmp + ".damaged"
	m.files.tree.Lock()
	if mount {
		err = swapContents(m.opts.Dir, tmp, trash)
	} else if err = os.Rename(m.opts.Dir, trash); err == nil {
		if err = os.Rename(tmp, m.opts.Dir); err != nil {
			os.Rename(trash, m.opts.Dir) // put the old one back
		}
	}
	if err == nil {
		m.state.setCommit(commit)
		m.files.cache.clear()
		m.files.incomplete.Store(false)
	}
	m.files.tree.Unlock()
	if err != nil {
		return Changes{}, fmt.Errorf("swapping in the rebuilt mirror: %w", err)
	}
	if err := os.RemoveAll(trash); err != nil {
		m.log.Warn().Err(err).Str("dir", trash).Msg("cannot remove the damaged mirror")
	}
	m.configured = true
	m.log.Warn().Str("commit", commit).Dur("duration_ms", time.Since(start)).Msg("index mirror rebuilt")
	// What changed cannot be told from a damaged history: clients holding
	// the old commit fetch the new one as after a rewrite, and cached
	// archives are checked against the index when served.
	return Changes{From: old, To: commit, Rewritten: old != commit}, nil
}

// swapContents moves dir's entries (but fresh, the new mirror inside it)
// into trash, .git first, so the old repository is gone before its work
// tree goes, then fresh's entries into dir, .git last.
func swapContents(dir, fresh, trash string) error {
	if err := os.Mkdir(trash, 0o755); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(dir, ".git"), filepath.Join(trash, ".git")); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if p == fresh || p == trash || strings.HasPrefix(e.Name(), tempPrefix(dir)) {
			continue
		}
		if err := os.Rename(p, filepath.Join(trash, e.Name())); err != nil {
			return err
		}
	}
	return moveContents(fresh, dir)
}

// isMountPoint reports whether dir is on another device than its parent.
func isMountPoint(dir string) bool {
	var d, p syscall.Stat_t
	if syscall.Stat(dir, &d) != nil || syscall.Stat(filepath.Dir(dir), &p) != nil {
		return false
	}
	return d.Dev != p.Dev
}

// checkTree makes sure the work tree an earlier process left matches main:
// one that died in the middle of a checkout (a crash, a full disk) leaves
// files half-written. A changed tree is checked out again; if that fails
// too, lookups wait for the next successful sync (ErrTreeIncomplete).
func (m *Mirror) checkTree(ctx context.Context) {
	// Another process's sync may be checking out right now: wait for it.
	unlock, err := lockSync(ctx, m.opts.Dir, m.log)
	if err != nil {
		m.log.Warn().Err(err).Msg("cannot check the index work tree now")
		return
	}
	defer unlock()
	out, err := m.git.Run(ctx, m.opts.Dir, nil, "status", "--porcelain", "--untracked-files=no")
	if err == nil && len(out) == 0 {
		return
	}
	m.log.Warn().Err(err).Str("dir", m.opts.Dir).Msg("index work tree differs from main (an interrupted checkout?); checking it out again")
	clearStaleLocks(m.opts.Dir, m.log)
	if _, err := m.git.Run(ctx, m.opts.Dir, nil, "checkout", "--quiet", "--force", localBranch); err != nil {
		m.log.Error().Err(err).Msg("index work tree cannot be restored now; lookups wait for the next sync")
		m.files.incomplete.Store(true)
	}
}
