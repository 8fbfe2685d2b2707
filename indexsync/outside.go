package indexsync

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// refWatch notices when another process (a `moonbit-registry sync`,
// `mirror` or `publish` run on the same root) moved main: the parsed files
// this process cached then describe an older commit, and the git endpoint
// already serves the newer one. Every lookup stats the ref file (and reads
// it only when it changed), except an archive hit's (RecentChecksum), which
// does at most once per refCheckInterval: for every hit, the stat under a
// mutex was a tenth of its cost, for what an operator does by hand. Every
// git request to the endpoint looks too (Freshen), so a checksum a client
// was served is known to the hits that follow.
type refWatch struct {
	mu    sync.Mutex
	last  os.FileInfo
	epoch time.Time    // set by New; next is measured from it (monotonic)
	next  atomic.Int64 // nanoseconds after epoch before which no stat is made
}

// refCheckInterval is how often an archive hit's lookup checks whether
// another process moved main.
const refCheckInterval = time.Second

// noticeOutsideSync is noticeOutsideSyncNow at most once per
// refCheckInterval.
func (m *Mirror) noticeOutsideSync() bool {
	if int64(time.Since(m.refs.epoch)) < m.refs.next.Load() {
		return false
	}
	return m.noticeOutsideSyncNow()
}

// noticeOutsideSyncNow drops the lookup cache and adopts main's commit if
// main on disk is not the commit this process last knew; it reports
// whether it did. Callers hold m.tree (shared), so no sync of this process
// moves main meanwhile.
func (m *Mirror) noticeOutsideSyncNow() bool {
	now := time.Since(m.refs.epoch)
	m.refs.mu.Lock()
	defer m.refs.mu.Unlock()
	m.refs.next.Store(int64(now + refCheckInterval))
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
	c, err := m.git.Commit(ctx, m.opts.Dir, "refs/heads/"+localBranch)
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
