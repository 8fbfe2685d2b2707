package indexsync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"moonbit-registry/gitrepo"
	"moonbit-registry/module"

	"github.com/rs/zerolog"
)

// Overlay is what the served index adds to upstream's (the private
// modules): with one, main is not upstream's commit but a composition of
// it, built here.
type Overlay interface {
	// Owners are the reserved owners: upstream's files under
	// user/<owner>/ never reach the served tree.
	Owners() []string
	// Files are the overlay's files by path in the tree
	// ("user/<owner>/<name>.index"), and when they last changed.
	Files(ctx context.Context) (map[string][]byte, time.Time, error)
}

// A composed commit has the served commit it follows as its one parent, so
// a client at any served commit fast-forwards, shallow or not. It names
// the commits it was built from in its message ("upstream <id>", "source
// <name> <id>"), not as parents: a client of a shallow mirror would then
// be handed a new shallow root, which git refuses to update to. Author,
// committer and date derive from the inputs alone, so the same inputs make
// the same commit on every replica.
const (
	composeName  = "moonbit-registry"
	composeEmail = "compose@moonbit-registry.invalid"
	// upstreamRef keeps the last fetched upstream commit (hidden from
	// clients): what the next fetch negotiates from. Upstream's commits
	// may be fetched by id (uploadpack.allowReachableSHA1InWant), which is
	// harmless: they are public. Sources' are kept out of the served
	// repository altogether (see sourceDir).
	upstreamRef = "refs/upstream/main"
)

// composer builds the served index's commits from upstream's files, the
// sources' and the overlay's (see compose), in the mirror at root or a
// clone being made beside it. It remembers its last composition.
type composer struct {
	root    string // the mirror's Dir: sources' repositories are beside it
	git     *gitrepo.Runner
	log     zerolog.Logger
	overlay Overlay
	sources []Source
	memo    composeMemo
}

// heads are the commits a sync fetched: upstream's under "", each
// Source's under its name; a source that was not reached is absent.
type heads map[string]string

// active reports whether main is built here rather than upstream's own.
func (cp *composer) active() bool { return cp.overlay != nil || len(cp.sources) > 0 }

// target is the commit main should move to, given what the sync fetched
// and the commit served now (base; "" for none). Without an Overlay or
// Sources that is upstream's commit itself (or base when upstream was not
// reached).
func (cp *composer) target(ctx context.Context, dir string, fetched heads, base string) (string, error) {
	if !cp.active() {
		if fetched[""] == "" {
			return base, nil
		}
		return fetched[""], nil
	}
	recorded := heads{}
	if base != "" {
		var err error
		if recorded, err = cp.builtFrom(ctx, dir, base); err != nil {
			return "", err
		}
	}
	// For each part, the commit whose files to take (src) and the commit
	// to name for it (used): what was fetched when it moved on, else what
	// base was built from, whose files base holds.
	src, used := heads{}, heads{}
	for _, name := range cp.partNames() {
		f, r := fetched[name], recorded[name]
		newer := f != "" && f != r
		if newer && r != "" {
			pdir := cp.partDir(dir, name)
			if cp.git.HasCommit(ctx, pdir, r) {
				// Moved on or rewritten, unless behind what base was built
				// from (another replica's fetch).
				behind, err := cp.git.IsAncestor(ctx, pdir, f, r)
				if err != nil {
					return "", err
				}
				newer = !behind
			} else {
				// base was built from a commit this repository never
				// fetched (another replica's): a newer one would descend
				// from it and bring it.
				newer = false
			}
		}
		switch {
		case newer:
			src[name], used[name] = f, f
		case r != "":
			src[name], used[name] = base, r
		}
	}
	if src[""] == "" {
		return base, nil // nothing of upstream's yet
	}
	return cp.compose(ctx, dir, src, used, base)
}

// partDir is the repository that holds a part's fetched commits: the
// mirror at dir for upstream, the source's own for a source.
func (cp *composer) partDir(dir, name string) string {
	if name == "" {
		return dir
	}
	return sourceDir(cp.root, name)
}

// holder is the repository that holds commit c of a part: the mirror at
// dir when c is base (whose tree has the part's files), else the part's.
func (cp *composer) holder(dir, name, c, base string) string {
	if c == base {
		return dir
	}
	return cp.partDir(dir, name)
}

// partNames are upstream ("") and the sources, in the order composed.
func (cp *composer) partNames() []string {
	names := []string{""}
	for _, s := range cp.sources {
		names = append(names, s.Name)
	}
	return names
}

// builtFrom is what served commit c was built from: the commits its
// message names if this registry composed it, else c itself as upstream's.
// Upstream may be another moonbit-registry that composes its own index:
// its commits carry the same author, but they are reachable from
// upstreamRef, and ours never are.
func (cp *composer) builtFrom(ctx context.Context, dir, c string) (heads, error) {
	out, err := cp.git.Run(ctx, dir, nil, "show", "-s", "--format=%ae%n%B", c)
	if err != nil {
		return nil, err
	}
	email, msg, _ := strings.Cut(string(out), "\n")
	if email != composeEmail || cp.fromUpstream(ctx, dir, c) {
		return heads{"": c}, nil
	}
	h := heads{}
	for _, line := range strings.Split(msg, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "upstream" && isCommitID(f[1]):
			h[""] = f[1]
		case len(f) == 3 && f[0] == "source" && isCommitID(f[2]):
			h[f[1]] = f[2]
		}
	}
	if h[""] == "" {
		return nil, fmt.Errorf("composed index commit %s does not name its upstream commit", c)
	}
	return h, nil
}

// fromUpstream reports whether commit c is upstream's (reachable from the
// last upstream commit fetched).
func (cp *composer) fromUpstream(ctx context.Context, dir, c string) bool {
	up, err := cp.git.Commit(ctx, dir, upstreamRef)
	if err != nil {
		return false
	}
	ok, err := cp.git.IsAncestor(ctx, dir, c, up)
	return err == nil && ok
}

// compose builds the served commit on top of base: upstream's files
// (from src[""]) except those of reserved owners and of the owners other
// sources serve, each source's files of its owners (from src[name]), and
// the overlay's files; used names the commits those files come from. It
// returns base when the tree would not change. It never returns upstream's
// own commit, even when nothing is added or hidden: served commits that
// are all ours are what tells them from upstream's (see builtFrom).
func (cp *composer) compose(ctx context.Context, dir string, src, used heads, base string) (string, error) {
	var (
		files   map[string][]byte
		changed time.Time
		err     error
	)
	if cp.overlay != nil {
		if files, changed, err = cp.overlay.Files(ctx); err != nil {
			return "", fmt.Errorf("compose the index: %w", err)
		}
	}
	// The same inputs give the same commit: an idle sync need not build
	// the tree again.
	key := composeKey(dir, src, used, base, files, changed)
	if c, ok := cp.memo.get(key); ok {
		return c, nil
	}
	c, err := cp.composeCommit(ctx, dir, src, used, base, files, changed)
	if err == nil {
		cp.memo.set(key, c)
	}
	return c, err
}

// composeKey digests everything a composed commit depends on.
func composeKey(dir string, src, used heads, base string, files map[string][]byte, changed time.Time) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00", dir, base, changed.Unix())
	for _, hs := range []heads{src, used} {
		for _, k := range slices.Sorted(maps.Keys(hs)) {
			fmt.Fprintf(h, "%s=%s\x00", k, hs[k])
		}
	}
	for _, p := range slices.Sorted(maps.Keys(files)) {
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(files[p]))
		h.Write(files[p])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// composeMemo remembers the last composition's inputs and commit.
type composeMemo struct {
	mu          sync.Mutex
	key, commit string
}

func (c *composeMemo) get(key string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.commit, c.key == key && c.commit != ""
}

func (c *composeMemo) set(key, commit string) {
	c.mu.Lock()
	c.key, c.commit = key, commit
	c.mu.Unlock()
}

// composeCommit is compose without the memo.
func (cp *composer) composeCommit(ctx context.Context, dir string, src, used heads, base string, files map[string][]byte, changed time.Time) (string, error) {
	tree, err := cp.composeTree(ctx, dir, src, base, files)
	if err != nil {
		return "", fmt.Errorf("compose the index: %w", err)
	}
	if base != "" {
		if bt, err := cp.git.Tree(ctx, dir, base); err != nil {
			return "", err
		} else if bt == tree {
			return base, nil
		}
	}
	when := changed.Unix()
	msg := fmt.Sprintf("Index composed by moonbit-registry (%d private module file(s))\n\nupstream %s\n", len(files), used[""])
	for _, name := range cp.partNames() {
		if c := src[name]; c != "" {
			out, err := cp.git.Run(ctx, cp.holder(dir, name, c, base), nil, "show", "-s", "--format=%ct", c)
			if err != nil {
				return "", err
			}
			t, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
			if err != nil {
				return "", fmt.Errorf("compose the index: date of %s: %w", c, err)
			}
			when = max(when, t)
		}
		if name != "" && used[name] != "" {
			msg += fmt.Sprintf("source %s %s\n", name, used[name])
		}
	}
	date := strconv.FormatInt(when, 10) + " +0000"
	env := []string{
		"GIT_AUTHOR_NAME=" + composeName, "GIT_AUTHOR_EMAIL=" + composeEmail, "GIT_AUTHOR_DATE=" + date,
		"GIT_COMMITTER_NAME=" + composeName, "GIT_COMMITTER_EMAIL=" + composeEmail, "GIT_COMMITTER_DATE=" + date,
	}
	args := []string{"commit-tree", tree, "-m", msg}
	if base != "" {
		args = append(args, "-p", base)
	}
	out, err := cp.git.RunEnv(ctx, dir, env, nil, args...)
	if err != nil {
		return "", fmt.Errorf("compose the index: %w", err)
	}
	c := strings.TrimSpace(string(out))
	cp.log.Info().Str("commit", c).Str("upstream", used[""]).Int("private_files", len(files)).Msg("composed the served index")
	return c, nil
}

// composeTree writes the composed tree's objects and returns its id, in a
// throwaway git index so the mirror's own is never touched.
func (cp *composer) composeTree(ctx context.Context, dir string, src heads, base string, files map[string][]byte) (string, error) {
	idx, err := os.CreateTemp(filepath.Join(dir, ".git"), "compose-index-*")
	if err != nil {
		return "", err
	}
	idx.Close()
	os.Remove(idx.Name()) // read-tree writes it anew
	defer os.Remove(idx.Name())
	env := []string{"GIT_INDEX_FILE=" + idx.Name()}
	if _, err := cp.git.RunEnv(ctx, dir, env, nil, "read-tree", src[""]+"^{tree}"); err != nil {
		return "", err
	}
	// Upstream's files of owners served from elsewhere go, in every case:
	// on macOS and Windows clients "user/ACME" and "user/acme" are one
	// directory.
	var hidden []string
	if cp.overlay != nil {
		hidden = append(hidden, cp.overlay.Owners()...)
	}
	for _, s := range cp.sources {
		hidden = append(hidden, s.Owners...)
	}
	if len(hidden) > 0 {
		args := []string{"rm", "-r", "-f", "--cached", "--quiet", "--ignore-unmatch", "--"}
		for _, o := range hidden {
			args = append(args, ":(literal,icase)"+module.OwnerIndexDir(o))
		}
		if _, err := cp.git.RunEnv(ctx, dir, env, nil, args...); err != nil {
			return "", err
		}
	}
	// Each source's files of its owners, as they are in its tree: from
	// base (already here), or from the source's repository, whose blobs
	// are copied in.
	var info bytes.Buffer
	for _, s := range cp.sources {
		c := src[s.Name]
		if c == "" {
			continue
		}
		from := cp.holder(dir, s.Name, c, base)
		args := []string{"ls-tree", "-r", "--full-tree", c, "--"}
		for _, o := range s.Owners {
			args = append(args, module.OwnerIndexDir(o))
		}
		out, err := cp.git.Run(ctx, from, nil, args...)
		if err != nil {
			return "", err
		}
		if from != dir {
			if err := cp.copyBlobs(ctx, from, dir, out); err != nil {
				return "", fmt.Errorf("source %s: %w", s.Name, err)
			}
		}
		info.Write(out)
	}
	blobs, err := cp.writeBlobs(ctx, dir, files)
	if err != nil {
		return "", err
	}
	for _, b := range blobs {
		fmt.Fprintf(&info, "100644 blob %s\t%s\n", b.id, b.path)
	}
	if info.Len() > 0 {
		if _, err := cp.git.RunEnv(ctx, dir, env, info.Bytes(), "update-index", "--add", "--index-info"); err != nil {
			return "", err
		}
	}
	out, err := cp.git.RunEnv(ctx, dir, env, nil, "write-tree")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

type blob struct{ path, id string }

// writeBlobs writes files as blobs with one git run (files in a temporary
// directory, their paths on git's input), in path order.
func (cp *composer) writeBlobs(ctx context.Context, dir string, files map[string][]byte) ([]blob, error) {
	if len(files) == 0 {
		return nil, nil
	}
	tmp, err := os.MkdirTemp(filepath.Join(dir, ".git"), "compose-blobs-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	out := make([]blob, 0, len(files))
	for p := range files {
		out = append(out, blob{path: p})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	var list bytes.Buffer
	for i, b := range out {
		f := filepath.Join(tmp, strconv.Itoa(i))
		if err := os.WriteFile(f, files[b.path], 0o644); err != nil {
			return nil, err
		}
		list.WriteString(f + "\n")
	}
	ids, err := cp.git.Run(ctx, dir, list.Bytes(), "hash-object", "-w", "--no-filters", "--stdin-paths")
	if err != nil {
		return nil, err
	}
	lines := strings.Fields(string(ids))
	if len(lines) != len(out) {
		return nil, fmt.Errorf("git hash-object gave %d ids for %d files", len(lines), len(out))
	}
	for i := range out {
		out[i].id = lines[i]
	}
	return out, nil
}

// copyBlobs copies the blobs an ls-tree listing names from the repository
// at from into the one at to, those it lacks, as one pack.
func (cp *composer) copyBlobs(ctx context.Context, from, to string, listing []byte) error {
	var ids bytes.Buffer
	for _, line := range strings.Split(string(listing), "\n") {
		// <mode> SP <type> SP <id> TAB <path>
		meta, _, ok := strings.Cut(line, "\t")
		if f := strings.Fields(meta); ok && len(f) == 3 && f[1] == "blob" {
			ids.WriteString(f[2] + "\n")
		}
	}
	if ids.Len() == 0 {
		return nil
	}
	out, err := cp.git.Run(ctx, to, ids.Bytes(), "cat-file", "--batch-check=%(objectname) %(objecttype)")
	if err != nil {
		return err
	}
	var missing bytes.Buffer
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if id, rest, _ := strings.Cut(line, " "); rest == "missing" {
			missing.WriteString(id + "\n")
		}
	}
	if missing.Len() == 0 {
		return nil
	}
	pack, err := cp.git.Run(ctx, from, missing.Bytes(), "pack-objects", "--quiet", "--stdout")
	if err != nil {
		return err
	}
	_, err = cp.git.Run(ctx, to, pack, "index-pack", "--stdin", "--fsck-objects")
	return err
}

// Recompose rebuilds the served index from the upstream commit it was
// last built from and the overlay as it is now, without asking upstream:
// what a publish calls so its module is served at once, upstream down or
// not. In a fleet it moves the fleet's tip too.
func (m *Mirror) Recompose(ctx context.Context) (Changes, error) {
	if !m.comp.active() {
		return Changes{}, nil
	}
	unlock, err := lockSync(ctx, m.opts.Dir, m.log)
	if err != nil {
		return Changes{}, err
	}
	defer unlock()
	if !hasRepo(m.opts.Dir) {
		return Changes{}, ErrNotReady
	}
	old := m.mainOnDisk(ctx)
	next, err := m.settle(ctx, m.opts.Dir, nil, old)
	if err != nil {
		return Changes{}, err
	}
	c, err := m.moveTo(ctx, old, next)
	if err != nil {
		return Changes{}, err
	}
	if m.opts.OnChange != nil && !c.Empty() {
		m.opts.OnChange(c)
	}
	return c, nil
}
