package indexsync

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// refWatch notices when another process (a `moonbit-registry sync` or
// `mirror` run on the same root) moved main: the parsed files this process
// cached then describe an older commit, and the git endpoint already serves
// the newer one. Every lookup stats the ref file (one syscall; the file is
// read only when it changed): checking less often would let a lookup in
// the moments after such a sync use a checksum the index no longer has.
type refWatch struct {
	mu   sync.Mutex
	last os.FileInfo
}

// noticeOutsideSync drops the lookup cache and adopts main's commit if main
// on disk is not the commit this process last knew; it reports whether it
// did. Callers hold m.tree (shared), so no sync of this process moves main
// meanwhile.
func (m *Mirror) noticeOutsideSync() bool {
	m.refs.mu.Lock()
	defer m.refs.mu.Unlock()
	p := filepath.Join(m.opts.Dir, ".git", "refs", "heads", localBranch)
	fi, err := os.Stat(p)
	if err != nil {
		return false // packed or missing: the next sync of our own sorts it out
	}
	if old := m.refs.last; old != nil && os.SameFile(old, fi) && old.ModTime().Equal(fi.ModTime()) && old.Size() == fi.Size() {
		return false
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return false
	}
	m.refs.last = fi
	commit := strings.TrimSpace(string(data))
	if !isCommitID(commit) || commit == m.Commit() {
		return false
	}
	m.log.Info().Str("from", m.Commit()).Str("to", commit).
		Msg("index mirror was moved by another process; dropping cached lookups")
	m.cache.clear()
	m.setCommit(commit)
	return true
}

func isCommitID(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}

// mainOnDisk is main as the repository holds it, adopted (with the lookup
// cache dropped) when another process moved it: what a sync or recompose,
// holding the sync lock, builds on. Building on a commit this process
// remembers instead would fork from what the other process served.
func (m *Mirror) mainOnDisk(ctx context.Context) string {
	c, err := m.revParse(ctx, m.opts.Dir, "refs/heads/"+localBranch)
	if err != nil || c == m.Commit() {
		return m.Commit()
	}
	m.tree.Lock()
	m.log.Info().Str("from", m.Commit()).Str("to", c).Msg("index mirror was moved by another process; building on its commit")
	m.cache.clear()
	m.setCommit(c)
	m.tree.Unlock()
	return c
}
