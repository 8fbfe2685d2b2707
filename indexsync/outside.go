package indexsync

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// refWatch notices when another process (a `moonbit-registry sync` or
// `mirror` run on the same root) moved main: the parsed files this process
// cached then describe an older commit, and the git endpoint already serves
// the newer one. A stat of the ref file per lookup is cheap; the file is
// read only when it changed.
type refWatch struct {
	mu   sync.Mutex
	last os.FileInfo
}

// noticeOutsideSync drops the lookup cache and adopts main's commit if main
// on disk is not the commit this process last knew. Callers hold m.tree
// (shared), so no sync of this process moves main meanwhile.
func (m *Mirror) noticeOutsideSync() {
	p := filepath.Join(m.opts.Dir, ".git", "refs", "heads", localBranch)
	fi, err := os.Stat(p)
	if err != nil {
		return // packed or missing: the next sync of our own sorts it out
	}
	m.refs.mu.Lock()
	defer m.refs.mu.Unlock()
	if old := m.refs.last; old != nil && os.SameFile(old, fi) && old.ModTime().Equal(fi.ModTime()) && old.Size() == fi.Size() {
		return
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return
	}
	m.refs.last = fi
	commit := strings.TrimSpace(string(data))
	if !isCommitID(commit) || commit == m.commit() {
		return
	}
	m.log.Info().Str("from", m.commit()).Str("to", commit).
		Msg("index mirror was moved by another process; dropping cached lookups")
	m.cache.clear()
	m.setCommit(commit)
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
