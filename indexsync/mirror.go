package indexsync

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"moonbit-registry/gitrepo"
	"moonbit-registry/module"

	"github.com/rs/zerolog"
)

// ErrNotReady is returned by lookups before the first successful sync has
// put a repository in Options.Dir.
var ErrNotReady = fmt.Errorf("%w: the index mirror has not finished its first sync from upstream", module.ErrIndexUnavailable)

// Mirror is a local git mirror of the index. All methods are safe for
// concurrent use.
type Mirror struct {
	opts Options
	log  zerolog.Logger
	git  *gitrepo.Runner

	syncs flights // the sync running now, shared by concurrent Syncs

	// configured is set once update has (re)applied the repository
	// settings; only the running flight touches it.
	configured bool

	// files are the checked-out index files as lookups read them; a sync
	// holds files.tree exclusively while it moves main.
	files *Lookups

	refreshMu sync.Mutex  // serialises RequestRefresh's window check
	running   atomic.Bool // Run is syncing periodically

	state *state

	// comp builds main when the index is composed (Overlay, Sources).
	comp *composer

	looks looks // see Freshen

	// fleet agrees on main with the other replicas; nil on its own.
	fleet *agreement

	// onGit, when set (tests only), sees the arguments of every git run.
	onGit func(args []string)
}

// Status describes the mirror for readiness checks and metrics.
type Status struct {
	// Commit is the commit main points to; empty before the first sync.
	Commit string
	// LastSync is when the last sync attempt finished, successful or not.
	LastSync time.Time
	// LastSuccess is when the last successful sync finished.
	LastSuccess time.Time
	// LastError is the error of the last sync attempt; nil if it succeeded.
	LastError error
	// Syncs and Failures count sync attempts and failed ones.
	Syncs, Failures uint64
	// Streak counts the failed attempts since the last success, and
	// FailingSince is when the first of them finished (zero when the last
	// sync succeeded).
	Streak       int
	FailingSince time.Time
	// NextTry is when Run tries again after a failure (zero otherwise).
	NextTry time.Time
}

// Ready reports whether the mirror has a commit to serve.
func (s Status) Ready() bool { return s.Commit != "" }

// New prepares a Mirror. It does not touch the network: an existing
// repository in opts.Dir is used as it is until the first Sync.
func New(opts Options) (*Mirror, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := module.ValidateBranch(opts.Branch); err != nil {
		return nil, fmt.Errorf("indexsync: branch %q: %w", opts.Branch, err)
	}
	if strings.HasPrefix(opts.UpstreamURL, "-") {
		return nil, fmt.Errorf("indexsync: upstream URL %q must not start with '-'", opts.UpstreamURL)
	}
	log := opts.Logger.With().Str("component", "indexsync").Logger()
	st := newState()
	m := &Mirror{
		opts:  opts,
		log:   log,
		state: st,
		files: newLookups(opts.Dir, st, log),
	}
	m.git, err = newGit(opts, func(args []string) {
		if m.onGit != nil {
			m.onGit(args)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("indexsync: %w", err)
	}
	m.syncs.run = m.syncOnce
	m.comp = &composer{root: opts.Dir, git: m.git, log: log, overlay: opts.Overlay, sources: opts.Sources}
	if opts.Fleet != nil {
		m.fleet = &agreement{fleet: opts.Fleet, root: opts.Dir, git: m.git, comp: m.comp, log: log}
	}
	if err := checkDir(opts.Dir); err != nil {
		return nil, err
	}
	removeStaleTemps(opts.Dir, log)
	if hasRepo(m.opts.Dir) {
		ctx, cancel := context.WithTimeout(context.Background(), opts.GitTimeout)
		defer cancel()
		commit, err := m.git.Commit(ctx, opts.Dir, "refs/heads/"+localBranch)
		if err != nil {
			// Not fatal: the next Sync repairs or reports it.
			m.log.Warn().Err(err).Str("dir", opts.Dir).Msg("existing index mirror has no usable main branch")
		} else {
			m.state.setCommit(commit)
			m.checkTree(ctx)
		}
	}
	return m, nil
}

// Lookups answers questions about the index from the mirror's work tree.
func (m *Mirror) Lookups() *Lookups { return m.files }

// Repository is the work tree to serve (proxy.Index): Dir.
func (m *Mirror) Repository() string { return m.opts.Dir }

// Ready is nil while the mirror has a commit to serve that is current
// enough (proxy.Index). Before the first sync it wraps ErrNotReady and says
// what to check; while Run runs and syncs have failed for longer than
// StaleAfter, it says for how long, how often, why, and when the next
// try is. The first clone is moved into place with .git last, so .git
// present means complete.
func (m *Mirror) Ready() error {
	st := m.Status()
	if !st.Ready() {
		if st.Streak == 0 {
			return fmt.Errorf("%w (%s)", ErrNotReady, m.opts.UpstreamURL)
		}
		return fmt.Errorf("%w: %s; check upstream.index_url and the network, or serve --offline a mirror synced before",
			ErrNotReady, failing(st, time.Now()))
	}
	if fi, err := os.Stat(filepath.Join(m.opts.Dir, ".git")); err != nil || !fi.IsDir() {
		return fmt.Errorf("%w: %s has no repository", ErrNotReady, m.opts.Dir)
	}
	now := time.Now()
	if m.running.Load() && st.Streak > 0 && now.Sub(st.FailingSince) >= m.opts.StaleAfter {
		return fmt.Errorf("%w: %s", ErrStale, failing(st, now))
	}
	return nil
}

// WaitReady returns once the mirror has a commit to serve (its first sync
// is done, or a mirror was there from before), or with ctx's error: what a
// client that clones right after start waits for instead of a 503.
func (m *Mirror) WaitReady(ctx context.Context) error {
	return m.state.waitServed(ctx)
}

// ErrStale: the mirror's syncs have failed for longer than StaleAfter.
var ErrStale = fmt.Errorf("%w: index mirror stale", module.ErrIndexUnavailable)

// failing describes a failure streak in one line: "index sync failing for
// 2m10s (5 attempts): <cause>; next try in 16s".
func failing(st Status, now time.Time) string {
	msg := fmt.Sprintf("index sync failing for %s (%d attempts): %v", now.Sub(st.FailingSince).Round(time.Second), st.Streak, st.LastError)
	if !st.NextTry.IsZero() {
		msg += fmt.Sprintf("; next try in %s", max(st.NextTry.Sub(now), 0).Round(time.Second))
	}
	return msg
}

// ReadCommit is the commit main points to in the mirror at dir, read
// without taking the mirror's lock or changing anything; "" when there is
// no mirror yet.
func ReadCommit(ctx context.Context, dir string) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, ".git")); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	git, err := gitrepo.New(gitrepo.Options{Timeout: DefaultGitTimeout})
	if err != nil {
		return "", err
	}
	c, err := git.Commit(ctx, dir, "refs/heads/"+localBranch)
	if err != nil {
		return "", fmt.Errorf("read the index mirror's commit in %s: %w", dir, err)
	}
	return c, nil
}

// Dir is the mirror repository's directory (absolute), the one to serve.
func (m *Mirror) Dir() string { return m.opts.Dir }

// Status reports the last sync outcome and the current commit.
func (m *Mirror) Status() Status {
	return m.state.get()
}

// Commit is the commit main points to; "" before the first sync.
func (m *Mirror) Commit() string {
	return m.state.commit()
}

// hasRepo reports whether dir holds a git repository. A first clone is
// renamed into place only once complete, so .git existing means usable.
func hasRepo(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, ".git"))
	return err == nil && fi.IsDir()
}

// checkDir refuses to adopt a Dir that holds something other than a
// repository: the mirror never deletes or overwrites files it did not make.
func checkDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("indexsync: %w", err)
	}
	if hasRepo(dir) {
		return nil
	}
	for _, e := range entries {
		// A first clone's leftovers are ours to replace.
		if !strings.HasPrefix(e.Name(), tempPrefix(dir)) {
			return fmt.Errorf("indexsync: %s exists, is not empty and is not a git repository; refusing to use it", dir)
		}
	}
	return nil
}

// tempPrefix names the directories a first clone of the mirror at dir is
// built in.
func tempPrefix(dir string) string {
	return "." + filepath.Base(dir) + ".clone-"
}

// staleTempAge is how old a leftover clone directory must be before New
// removes it: old enough that no live clone (each git step is bounded by
// GitTimeout) can still be using it.
const staleTempAge = time.Hour

// removeStaleTemps deletes clone directories left by a process that died
// mid-clone, beside Dir or inside it. Only names made by tempPrefix are
// touched.
func removeStaleTemps(dir string, log zerolog.Logger) {
	removeStaleTempsIn(filepath.Dir(dir), tempPrefix(dir), log)
	if !hasRepo(dir) {
		removeStaleTempsIn(dir, tempPrefix(dir), log)
	}
}

func removeStaleTempsIn(parent, prefix string, log zerolog.Logger) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleTempAge {
			p := filepath.Join(parent, e.Name())
			if err := os.RemoveAll(p); err != nil {
				log.Warn().Err(err).Str("dir", p).Msg("cannot remove stale clone directory")
			}
		}
	}
}
