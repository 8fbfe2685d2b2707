package indexsync

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// refWatch notices when another process (a `moonbit-registry sync` or
// `mirror` run on the same root) moved main: the parsed files this process
// cached then describe an older commit, and the git endpoint already serves
// the newer one. Lookups stat the ref file at most once per
// refCheckInterval (a hit path stays cheap); a lookup that finds nothing
// checks at once, so a version another process just synced is never
// reported missing.
type refWatch struct {
	mu      sync.Mutex
	last    os.FileInfo
	checked time.Time
}

const refCheckInterval = time.Second

// noticeOutsideSync drops the lookup cache and adopts main's commit if main
// on disk is not the commit this process last knew; it reports whether it
// did. Unless force, it looks at most once per refCheckInterval. Callers
// hold m.tree (shared), so no sync of this process moves main meanwhile.
func (m *Mirror) noticeOutsideSync(force bool) bool {
	m.refs.mu.Lock()
	defer m.refs.mu.Unlock()
	now := time.Now()
	if !force && now.Sub(m.refs.checked) < refCheckInterval {
		return false
	}
	m.refs.checked = now
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
	if !isCommitID(commit) || commit == m.commit() {
		return false
	}
	m.log.Info().Str("from", m.commit()).Str("to", commit).
		Msg("index mirror was moved by another process; dropping cached lookups")
	m.cache.clear()
	m.setCommit(commit)
	return true
}

// recheckOutsideSync forces the check, for a lookup that found nothing.
func (m *Mirror) recheckOutsideSync() bool {
	m.tree.RLock()
	defer m.tree.RUnlock()
	return m.noticeOutsideSync(true)
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
