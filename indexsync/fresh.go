package indexsync

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultCheckInterval is Options.CheckInterval's default.
const DefaultCheckInterval = 10 * time.Second

// checkTimeout bounds the look at upstream's tip that a client's request
// waits for.
const checkTimeout = 5 * time.Second

// Freshen is called when a client asks for the index: if upstream was last
// looked at more than CheckInterval ago, it asks upstream for its tip (git
// ls-remote, one request at a time) and syncs first when the tip moved, so
// a version published a moment ago is in the answer. The request waits for
// that at most checkTimeout; callers that arrive while a look is under way
// get the local mirror at once, and Freshen never fails a request.
// Upstream sees at most one look per CheckInterval however many clients
// come. First of all, a move of main by another process is adopted.
func (m *Mirror) Freshen(ctx context.Context) {
	// What this request is served next is main on disk: lookups must know
	// it too, also when another process moved it (see refWatch).
	m.files.tree.RLock()
	m.files.noticeOutsideSyncNow()
	m.files.tree.RUnlock()
	if m.opts.CheckInterval <= 0 || !hasRepo(m.opts.Dir) {
		return
	}
	if time.Since(m.looks.last(m.Status().LastSync)) < m.opts.CheckInterval {
		return
	}
	if !m.looks.looking.TryLock() {
		return // another request is looking: answer from what is here
	}
	defer m.looks.looking.Unlock()
	if time.Since(m.looks.last(m.Status().LastSync)) < m.opts.CheckInterval {
		return // looked while this one waited for the lock
	}
	m.looks.lookedAt.Store(time.Now().UnixNano())
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), checkTimeout)
	defer cancel()
	if !m.tipsMoved(cctx) {
		return
	}
	m.log.Info().Str("mirror", m.Commit()).Msg("upstream's index moved: syncing before answering")
	// The sync runs to its end (within GitTimeout) even when this request
	// stops waiting for it after the check's time: the next one gets it.
	select {
	case err := <-m.detachedSync(ctx):
		if err != nil {
			m.log.Warn().Err(err).Msg("sync before answering failed; answering from the mirror")
		}
	case <-cctx.Done(): // the check's time is up
		m.log.Info().Msg("sync still running; answering from the mirror meanwhile")
	case <-ctx.Done():
	}
}

// looks remembers when upstream was last looked at and the tips the last
// fetches gave, which Freshen compares upstream's tips with.
type looks struct {
	looking  sync.Mutex   // held by the one Freshen looking at upstream
	lookedAt atomic.Int64 // when Freshen last looked (UnixNano)
	// fetchedTips: upstream's ("") and each Source's commit as the last
	// fetch gave it (strings).
	fetchedTips sync.Map
}

// last is when upstream was last looked at: a look, or the last sync
// (lastSync).
func (l *looks) last(lastSync time.Time) time.Time {
	looked := time.Unix(0, l.lookedAt.Load())
	if lastSync.After(looked) {
		return lastSync
	}
	return looked
}

// detachedSync starts a sync that runs to its end (within GitTimeout)
// whoever stops waiting for it, and returns where its error arrives.
func (m *Mirror) detachedSync(ctx context.Context) <-chan error {
	done := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.opts.GitTimeout)
		defer cancel()
		_, err := m.Sync(sctx)
		done <- err
	}()
	return done
}

// tipsMoved looks at the tips of upstream and of every Source (git
// ls-remote) and reports whether one differs from what the last fetch
// gave. Trouble reaching one counts as not moved.
func (m *Mirror) tipsMoved(ctx context.Context) bool {
	type repo struct{ name, url, header, branch string }
	repos := []repo{{"", m.opts.UpstreamURL, m.opts.UpstreamHeader, m.opts.Branch}}
	for _, s := range m.opts.Sources {
		repos = append(repos, repo{s.Name, s.URL, s.Header, DefaultBranch})
	}
	for _, r := range repos {
		start := time.Now()
		out, err := m.git.RunEnv(ctx, m.opts.Dir, headerEnv(r.header), nil, "ls-remote", "--", r.url, "refs/heads/"+r.branch)
		if r.name == "" && m.opts.OnUpstream != nil && !errors.Is(ctx.Err(), context.Canceled) {
			m.opts.OnUpstream(start, err)
		}
		if err != nil {
			m.log.Debug().Err(err).Str("source", r.name).Msg("could not look at an index tip; answering from the mirror")
			continue
		}
		tip, _, _ := bytes.Cut(bytes.TrimSpace(out), []byte("\t"))
		if len(tip) == 0 || string(tip) == m.looks.lastFetched(r.name) || (r.name == "" && string(tip) == m.Commit()) {
			continue
		}
		return true
	}
	return false
}

// noteFetched records the commit a fetch of upstream ("") or a Source
// gave, which Freshen compares tips with (main is not upstream's own
// commit when the index is composed).
func (l *looks) noteFetched(name, c string) { l.fetchedTips.Store(name, c) }

func (l *looks) lastFetched(name string) string {
	c, _ := l.fetchedTips.Load(name)
	s, _ := c.(string)
	return s
}

// noteUpstream records upstream's fetched commit, and when the index is
// composed keeps it under a hidden ref, which the next fetch negotiates
// from.
func (m *Mirror) noteUpstream(ctx context.Context, dir, c string) error {
	m.looks.noteFetched("", c)
	if !m.comp.active() {
		return nil
	}
	_, err := m.git.Run(ctx, dir, nil, "update-ref", upstreamRef, c)
	return err
}
