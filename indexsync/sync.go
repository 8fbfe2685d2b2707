package indexsync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"moonbit-registry/gitrepo"
)

// Sync brings the mirror up to date with upstream and reports what changed.
// Concurrent calls share one git run. On failure the mirror keeps its last
// good state. A caller whose ctx ends gets ctx's error at once; the shared
// run is cancelled (its git killed) only when no caller waits for it any
// more.
func (m *Mirror) Sync(ctx context.Context) (Changes, error) {
	return m.syncs.wait(ctx, m.syncs.start(ctx))
}

// syncOnce runs one sync and records its outcome in Status.
func (m *Mirror) syncOnce(ctx context.Context) (Changes, error) {
	start := time.Now()
	var (
		c   Changes
		err error
	)
	unlock, err := lockSync(ctx, m.opts.Dir, m.log)
	if err == nil {
		if hasRepo(m.opts.Dir) {
			clearStaleLocks(m.opts.Dir, m.log)
			c, err = m.update(ctx)
			if err != nil && ctx.Err() == nil && corrupt(ctx, m.git, m.opts.Dir) {
				c, err = m.rebuild(ctx, err)
			}
		} else {
			c, err = m.cloneFirst(ctx)
		}
		unlock()
	}
	now := time.Now()
	if err != nil {
		err = fmt.Errorf("index sync from %s: %w", m.opts.UpstreamURL, err)
	}
	if err != nil && errors.Is(context.Cause(ctx), errAbandoned) {
		// Stopped on purpose (shutdown): says nothing about upstream, so
		// it neither counts as an attempt nor fills LastError, which
		// RequestRefresh would hand out.
		m.log.Info().Dur("duration_ms", now.Sub(start)).Msg("index sync cancelled: nobody waits for it")
		return Changes{}, err
	}
	m.state.recordSync(now, err)
	if err != nil {
		m.log.Error().Err(err).Dur("duration_ms", now.Sub(start)).Msg("index sync failed; keeping the last good mirror")
		return Changes{}, err
	}
	ev := m.log.Info()
	if c.From == c.To {
		ev = m.log.Debug()
	}
	ev.Str("from", c.From).Str("to", c.To).Bool("initial", c.Initial).
		Int("modules", len(c.Modules)).Int("added", len(c.Added)).Int("changed", len(c.Changed)).
		Int("removed", len(c.Removed)).Dur("duration_ms", now.Sub(start)).Msg("index synced")
	if m.opts.OnChange != nil && !c.Empty() {
		m.opts.OnChange(c)
	}
	return c, nil
}

// cloneFirst builds the first mirror in a temporary directory and moves it
// into place only once it is complete, so Dir is either not a repository
// or a whole one. The temporary directory is beside Dir, or inside Dir
// when Dir already exists (empty, as New checked): it may be a mount point
// that cannot be replaced by a rename.
func (m *Mirror) cloneFirst(ctx context.Context) (Changes, error) {
	parent := filepath.Dir(m.opts.Dir)
	_, statErr := os.Stat(m.opts.Dir)
	inside := statErr == nil
	if inside {
		parent = m.opts.Dir
	}
	tmp, commit, err := m.cloneInto(ctx, parent)
	if tmp != "" {
		defer os.RemoveAll(tmp) // a no-op once moved into place
	}
	if err != nil {
		return Changes{}, err
	}
	m.files.tree.Lock()
	if inside {
		err = moveContents(tmp, m.opts.Dir)
	} else {
		err = os.Rename(tmp, m.opts.Dir)
	}
	if err != nil {
		m.files.tree.Unlock()
		return Changes{}, fmt.Errorf("move new mirror into place: %w", err)
	}
	m.state.setCommit(commit)
	m.files.cache.clear()
	m.files.tree.Unlock()
	return Changes{To: commit, Initial: true}, nil
}

// cloneInto makes a complete mirror in a new temporary directory in parent
// and returns it (to be removed by the caller if not moved) and where its
// main is.
func (m *Mirror) cloneInto(ctx context.Context, parent string) (tmp, target string, err error) {
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", "", err
	}
	tmp, err = os.MkdirTemp(parent, tempPrefix(m.opts.Dir))
	if err != nil {
		return "", "", err
	}
	if _, err := m.git.Run(ctx, tmp, nil, "init", "--quiet", "--initial-branch="+localBranch); err != nil {
		return tmp, "", err
	}
	if err := configure(ctx, m.git, tmp); err != nil {
		return tmp, "", err
	}
	// Shallow on its own: clients only ever need the tip and what comes
	// after it. In a fleet, full: a client may come with any commit
	// another replica served.
	var depth []string
	if m.fleet == nil {
		depth = []string{"--depth=1"}
	}
	commit, err := m.fetch(ctx, tmp, depth...)
	fetched := heads{}
	if err == nil {
		fetched[""] = commit
		if err := m.noteUpstream(ctx, tmp, commit); err != nil {
			return tmp, "", err
		}
		m.fetchSources(ctx, fetched)
	}
	switch {
	case err != nil && m.fleet == nil:
		return tmp, "", err
	case err != nil:
		m.log.Warn().Err(err).Msg("upstream unreachable; starting from the fleet's index")
	}
	if target, err = m.settle(ctx, tmp, fetched, ""); err != nil {
		return tmp, "", err
	}
	if _, err := m.git.Run(ctx, tmp, nil, "checkout", "--quiet", "--force", "-B", localBranch, target); err != nil {
		return tmp, "", err
	}
	return tmp, target, nil
}

// settle is the commit main moves to, given what a sync fetched and the
// commit served now (base): the fleet's agreement in a fleet (see agree),
// else target's.
func (m *Mirror) settle(ctx context.Context, dir string, fetched heads, base string) (string, error) {
	if m.fleet != nil {
		return m.fleet.agree(ctx, dir, fetched)
	}
	return m.comp.target(ctx, dir, fetched, base)
}

// moveContents renames every entry of src into dst, .git last: a reader
// (or the git handler) takes dst for a repository once .git is there, and
// by then the work tree is complete.
func moveContents(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == ".git" {
			continue
		}
		if err := os.Rename(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return os.Rename(filepath.Join(src, ".git"), filepath.Join(dst, ".git"))
}

// configure sets what serving the repository with git http-backend needs.
// http.receivepack stays unset: http-backend then refuses pushes from
// anonymous clients, and the proxy refuses them before that.
func configure(ctx context.Context, git *gitrepo.Runner, dir string) error {
	for _, kv := range [][2]string{
		{"http.uploadpack", "true"},
		{"gc.autoDetach", "false"},
		// A symlink committed upstream is checked out as a plain file,
		// so nothing in the work tree points outside it.
		{"core.symlinks", "false"},
		// Objects and refs reach the disk before git reports success, so
		// a power loss cannot leave an emptied object file behind.
		{"core.fsync", "objects,derived-metadata,reference"},
		{"core.fsyncMethod", "fsync"},
		// A client may ask for a commit main reached before (another
		// replica advertised it a moment ago): anything main reaches is
		// served.
		{"uploadpack.allowReachableSHA1InWant", "true"},
	} {
		if _, err := git.Run(ctx, dir, nil, "config", kv[0], kv[1]); err != nil {
			return err
		}
	}
	// The ref a fleet's bundle is made from and the upstream commit a
	// composed index was built from are not for clients.
	if _, err := git.Run(ctx, dir, nil, "config", "--replace-all", "uploadpack.hideRefs", "refs/fleet/"); err != nil {
		return err
	}
	_, err := git.Run(ctx, dir, nil, "config", "--add", "uploadpack.hideRefs", "refs/upstream/")
	return err
}

// fetch fetches the upstream branch into FETCH_HEAD (no local ref is
// created, so nothing extra is advertised to clients) and returns the
// fetched commit.
func (m *Mirror) fetch(ctx context.Context, dir string, extra ...string) (string, error) {
	start := time.Now()
	c, err := fetchFrom(ctx, m.git, dir, m.opts.UpstreamURL, m.opts.UpstreamHeader, m.opts.Branch, extra...)
	if m.opts.OnUpstream != nil && !errors.Is(ctx.Err(), context.Canceled) {
		m.opts.OnUpstream(start, err)
	}
	return c, err
}

// fetchFrom fetches branch of the repository at url into FETCH_HEAD,
// sending header (if any) with every HTTP request. The header goes through
// the environment, never the command line, which errors and logs show.
func fetchFrom(ctx context.Context, git *gitrepo.Runner, dir, url, header, branch string, extra ...string) (string, error) {
	args := append([]string{"fetch", "--quiet", "--no-tags", "--no-recurse-submodules"}, extra...)
	args = append(args, "--", url, "refs/heads/"+branch)
	if _, err := git.RunEnv(ctx, dir, headerEnv(header), nil, args...); err != nil {
		return "", err
	}
	return git.Commit(ctx, dir, "FETCH_HEAD")
}

// headerEnv passes an extra HTTP header to git as configuration.
//
// git sends http.extraHeader to wherever a redirect leads, its later
// requests included: with a header, redirects are not followed, so the
// credential reaches only the configured host (an index URL that
// redirects must be configured as its final URL).
func headerEnv(header string) []string {
	if header == "" {
		return nil
	}
	return []string{"GIT_CONFIG_COUNT=2",
		"GIT_CONFIG_KEY_0=http.extraHeader", "GIT_CONFIG_VALUE_0=" + header,
		"GIT_CONFIG_KEY_1=http.followRedirects", "GIT_CONFIG_VALUE_1=false"}
}

// fetchSources fetches each Source's branch into a repository of its own
// beside the mirror (see sourceDir); what it fetched goes into fetched. A
// source that cannot be reached is logged and left out: its owners are
// served as they were. As upstream's, a source's history starts shallow
// on its own and is full in a fleet.
func (m *Mirror) fetchSources(ctx context.Context, fetched heads) {
	for _, src := range m.opts.Sources {
		dir, created, err := sourceRepo(ctx, m.git, m.opts.Dir, src.Name)
		var c string
		if err == nil {
			var extra []string
			switch {
			case m.fleet == nil && created:
				extra = []string{"--depth=1"}
			case m.fleet != nil && isShallow(dir):
				extra = []string{"--unshallow"}
			}
			c, err = fetchFrom(ctx, m.git, dir, src.URL, src.Header, DefaultBranch, extra...)
		}
		if err == nil {
			_, err = m.git.Run(ctx, dir, nil, "update-ref", "refs/heads/"+localBranch, c)
		}
		if err != nil {
			m.log.Warn().Err(err).Str("source", src.Name).Msg("index source unreachable; its owners are served as they were")
			continue
		}
		fetched[src.Name] = c
		m.looks.noteFetched(src.Name, c)
	}
}

// sourceDir is where a Source's index is fetched to: a repository of its
// own, never served, so none of its commits is reachable from what
// clients may fetch (its other owners' files stay out of reach).
func sourceDir(mirrorDir, name string) string {
	return filepath.Join(filepath.Dir(mirrorDir), "."+filepath.Base(mirrorDir)+".sources", name)
}

// sourceRepo returns the repository of the source name of the mirror at
// mirrorDir, and whether it was created now.
func sourceRepo(ctx context.Context, git *gitrepo.Runner, mirrorDir, name string) (dir string, created bool, err error) {
	dir = sourceDir(mirrorDir, name)
	if fi, err := os.Stat(filepath.Join(dir, ".git")); err == nil && fi.IsDir() {
		return dir, false, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, err
	}
	if _, err := git.Run(ctx, dir, nil, "init", "--quiet", "--initial-branch="+localBranch); err != nil {
		return "", false, err
	}
	for _, kv := range [][2]string{{"gc.autoDetach", "false"}, {"core.fsync", "objects,derived-metadata,reference"}} {
		if _, err := git.Run(ctx, dir, nil, "config", kv[0], kv[1]); err != nil {
			return "", false, err
		}
	}
	return dir, true, nil
}

// update fetches into the existing mirror and then moves main. The fetch
// is not shallow: in a shallow repository a plain fetch stops at the
// commits already present, so the new tip's history connects to the old
// one and clients holding the old tip can fast-forward. Only if upstream
// rewrote its history does this fetch all of it.
func (m *Mirror) update(ctx context.Context) (Changes, error) {
	old := m.mainOnDisk(ctx)
	if !m.configured {
		// A repository from an earlier run may predate a setting.
		if err := configure(ctx, m.git, m.opts.Dir); err != nil {
			return Changes{}, err
		}
		m.configured = true
	}
	var extra []string
	if m.fleet != nil && isShallow(m.opts.Dir) {
		// A mirror from before the fleet: full history from now on.
		extra = []string{"--unshallow"}
	}
	next, fetchErr := m.fetch(ctx, m.opts.Dir, extra...)
	if m.fleet == nil && fetchErr != nil && !m.comp.active() {
		return Changes{}, fetchErr
	}
	fetched := heads{}
	if fetchErr == nil {
		fetched[""] = next
		if err := m.noteUpstream(ctx, m.opts.Dir, next); err != nil {
			return Changes{}, err
		}
	}
	m.fetchSources(ctx, fetched)
	next, err := m.settle(ctx, m.opts.Dir, fetched, old)
	if err != nil {
		if fetchErr != nil && m.fleet != nil {
			return Changes{}, fmt.Errorf("%w; and the fleet's index: %w", fetchErr, err)
		}
		return Changes{}, errors.Join(fetchErr, err)
	}
	c, err := m.moveTo(ctx, old, next)
	switch {
	case err != nil || fetchErr == nil:
	case m.fleet != nil:
		// At the fleet's tip, but upstream did not answer: the sync failed
		// all the same (a version missing from the index is not known not
		// to exist, and a long outage makes the mirror stale).
		err = fmt.Errorf("upstream unreachable; following the fleet's index at %s: %w", next, fetchErr)
	default:
		// Composed: the other sources and the private modules moved on
		// over upstream's last index; the sync failed all the same.
		err = fmt.Errorf("upstream unreachable; its last index is served with the other sources and private modules: %w", fetchErr)
	}
	return c, err
}

// isShallow reports whether the repository at dir has shallow history.
func isShallow(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, ".git", "shallow"))
	return err == nil
}

// moveTo moves main from old to next and says what changed.
func (m *Mirror) moveTo(ctx context.Context, old, next string) (Changes, error) {
	if next == old {
		if m.files.incomplete.Load() {
			// Upstream has not moved, but the tree a failed checkout left
			// must be checked out again all the same.
			return Changes{From: old, To: next}, m.moveMain(ctx, next, nil, true)
		}
		return Changes{From: old, To: next}, nil
	}
	rewritten := false
	if old != "" {
		ff, err := m.git.IsAncestor(ctx, m.opts.Dir, old, next)
		if err != nil || !ff {
			rewritten = true
			m.log.Error().Err(err).Str("from", old).Str("to", next).
				Msg("UPSTREAM INDEX HISTORY WAS REWRITTEN: the new upstream commit does not descend from the mirrored one; following upstream anyway, clients will have to re-clone")
		}
	}
	var names []string
	if old != "" {
		var err error
		names, err = changedFiles(ctx, m.git, m.opts.Dir, old, next)
		if err != nil {
			m.log.Warn().Err(err).Msg("cannot list changed index files; dropping the whole lookup cache")
		}
	}
	if err := m.moveMain(ctx, next, names, old == "" || names == nil); err != nil {
		return Changes{}, err
	}
	c := Changes{From: old, To: next, Rewritten: rewritten, Initial: old == ""}
	if old != "" && names != nil {
		if err := describe(ctx, m.git, m.opts.Dir, &c, names, m.log); err != nil {
			m.log.Warn().Err(err).Msg("cannot describe index changes")
		}
	}
	return c, nil
}

// moveMain checks main out at commit while readers are held off, and drops
// cached parses of the modules whose files changed (or all of them).
func (m *Mirror) moveMain(ctx context.Context, commit string, changed []string, clearAll bool) error {
	m.files.tree.Lock()
	defer m.files.tree.Unlock()
	if _, err := m.git.Run(ctx, m.opts.Dir, nil, "checkout", "--quiet", "--force", "-B", localBranch, commit); err != nil {
		// The checkout may have rewritten part of the tree (a full disk
		// cuts a file short): lookups refuse the tree until a checkout
		// succeeds, cached parses cannot be trusted, and main tells where
		// we are. Clients are unaffected: git serves objects, not files.
		m.files.incomplete.Store(true)
		m.files.cache.clear()
		if c, rerr := m.git.Commit(ctx, m.opts.Dir, "refs/heads/"+localBranch); rerr == nil {
			m.state.setCommit(c)
		}
		return err
	}
	m.files.incomplete.Store(false)
	m.state.setCommit(commit)
	if clearAll {
		m.files.cache.clear()
		return nil
	}
	for _, name := range changed {
		if mod, ok := moduleFromPath(name); ok {
			m.files.cache.remove(mod)
		}
	}
	return nil
}
