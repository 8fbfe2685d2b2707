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
func (l *Lookups) noticeOutsideSync() bool {
	if int64(time.Since(l.refs.epoch)) < l.refs.next.Load() {
		return false
	}
	return l.noticeOutsideSyncNow()
}

// noticeOutsideSyncNow drops the lookup cache and adopts main's commit if
// main on disk is not the commit this process last knew; it reports
// whether it did. Callers hold l.tree (shared), so no sync of this process
// moves main meanwhile.
func (l *Lookups) noticeOutsideSyncNow() bool {
	now := time.Since(l.refs.epoch)
	l.refs.mu.Lock()
	defer l.refs.mu.Unlock()
	l.refs.next.Store(int64(now + refCheckInterval))
	p := filepath.Join(l.dir, ".git", "refs", "heads", localBranch)
	fi, err := os.Stat(p)
	if err != nil {
		return false // packed or missing: the next sync of our own sorts it out
	}
	if old := l.refs.last; old != nil && os.SameFile(old, fi) && old.ModTime().Equal(fi.ModTime()) && old.Size() == fi.Size() {
		return false
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return false
	}
	l.refs.last = fi
	commit := strings.TrimSpace(string(data))
	if !isCommitID(commit) || commit == l.state.commit() {
		return false
	}
	l.log.Info().Str("from", l.state.commit()).Str("to", commit).
		Msg("index mirror was moved by another process; dropping cached lookups")
	l.cache.clear()
	l.state.setCommit(commit)
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
	m.files.tree.Lock()
	m.log.Info().Str("from", m.Commit()).Str("to", c).Msg("index mirror was moved by another process; building on its commit")
	m.files.cache.clear()
	m.state.setCommit(c)
	m.files.tree.Unlock()
	return c
}
