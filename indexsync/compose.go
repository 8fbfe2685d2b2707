package indexsync

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
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
// the upstream commit it was built from in its message ("upstream <id>"),
// not as a parent: a client of a shallow mirror would then be handed a new
// shallow root, which git refuses to update to. Author, committer and date
// derive from the inputs alone, so the same inputs make the same commit on
// every replica.
const (
	composeName  = "moonbit-registry"
	composeEmail = "compose@moonbit-registry.invalid"
	// upstreamRef keeps the last fetched upstream commit (hidden from
	// clients): what the next fetch negotiates from.
	upstreamRef = "refs/upstream/main"
)

// target is the commit main should move to, given upstream's commit
// (upstream; "" when it was not reached) and the commit served now (base;
// "" for none). Without an Overlay that is upstream's commit itself (or
// base when upstream was not reached).
func (m *Mirror) target(ctx context.Context, dir, upstream, base string) (string, error) {
	if m.opts.Overlay == nil {
		if upstream == "" {
			return base, nil
		}
		return upstream, nil
	}
	// src is the commit whose tree, without the reserved owners' files,
	// gives the upstream part; u is the upstream commit that is.
	src, u := upstream, upstream
	if base != "" {
		bu, err := m.upstreamOf(ctx, dir, base)
		if err != nil {
			return "", err
		}
		newer := upstream != "" && upstream != bu
		if newer && m.hasCommit(ctx, dir, bu) {
			// Upstream moved on or rewrote its history, unless it is
			// behind what base was built from (another replica's fetch).
			behind, err := m.isAncestorIn(ctx, dir, upstream, bu)
			if err != nil {
				return "", err
			}
			newer = !behind
		} else if newer {
			// base was built from a commit this repository never
			// fetched (another replica's): a newer upstream descends
			// from it and brings it, so this fetch is not newer.
			newer = false
		}
		if !newer {
			src, u = base, bu
		}
	}
	if src == "" {
		return base, nil
	}
	return m.compose(ctx, dir, src, u, base)
}

// upstreamOf is the upstream commit served commit c was built from: the
// one its message names if it is a composed commit, c itself otherwise.
func (m *Mirror) upstreamOf(ctx context.Context, dir, c string) (string, error) {
	out, err := m.git(ctx, dir, nil, "show", "-s", "--format=%ae%n%B", c)
	if err != nil {
		return "", err
	}
	email, msg, _ := strings.Cut(string(out), "\n")
	if email != composeEmail {
		return c, nil
	}
	for _, line := range strings.Split(msg, "\n") {
		if id, ok := strings.CutPrefix(line, "upstream "); ok && isCommitID(id) {
			return id, nil
		}
	}
	return "", fmt.Errorf("composed index commit %s does not name its upstream commit", c)
}

// compose builds the served commit on top of base from src's tree without
// the reserved owners' files, plus the overlay's (u is the upstream commit
// that tree comes from). It returns base when the tree would not change,
// and upstream's own commit when the overlay adds and hides nothing and it
// fast-forwards from base.
func (m *Mirror) compose(ctx context.Context, dir, src, u, base string) (string, error) {
	files, changed, err := m.opts.Overlay.Files(ctx)
	if err != nil {
		return "", fmt.Errorf("compose the index: %w", err)
	}
	tree, err := m.composeTree(ctx, dir, src, files)
	if err != nil {
		return "", fmt.Errorf("compose the index: %w", err)
	}
	if base != "" {
		if bt, err := m.treeOf(ctx, dir, base); err != nil {
			return "", err
		} else if bt == tree {
			return base, nil
		}
	}
	if src == u {
		if ut, err := m.treeOf(ctx, dir, u); err != nil {
			return "", err
		} else if ut == tree {
			ff := base == ""
			if !ff {
				if ff, err = m.isAncestorIn(ctx, dir, base, u); err != nil {
					return "", err
				}
			}
			if ff {
				return u, nil
			}
		}
	}
	out, err := m.git(ctx, dir, nil, "show", "-s", "--format=%ct", src)
	if err != nil {
		return "", err
	}
	when, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return "", fmt.Errorf("compose the index: date of %s: %w", src, err)
	}
	when = max(when, changed.Unix())
	date := strconv.FormatInt(when, 10) + " +0000"
	env := []string{
		"GIT_AUTHOR_NAME=" + composeName, "GIT_AUTHOR_EMAIL=" + composeEmail, "GIT_AUTHOR_DATE=" + date,
		"GIT_COMMITTER_NAME=" + composeName, "GIT_COMMITTER_EMAIL=" + composeEmail, "GIT_COMMITTER_DATE=" + date,
	}
	msg := fmt.Sprintf("Index with %d private module file(s)\n\nupstream %s\n", len(files), u)
	args := []string{"commit-tree", tree, "-m", msg}
	if base != "" {
		args = append(args, "-p", base)
	}
	out, err = m.gitWith(ctx, dir, env, nil, args...)
	if err != nil {
		return "", fmt.Errorf("compose the index: %w", err)
	}
	c := strings.TrimSpace(string(out))
	m.log.Info().Str("commit", c).Str("upstream", u).Int("private_files", len(files)).Msg("composed the served index")
	return c, nil
}

// composeTree writes the composed tree's objects and returns its id, in a
// throwaway git index so the mirror's own is never touched.
func (m *Mirror) composeTree(ctx context.Context, dir, u string, files map[string][]byte) (string, error) {
	idx, err := os.CreateTemp(filepath.Join(dir, ".git"), "compose-index-*")
	if err != nil {
		return "", err
	}
	idx.Close()
	os.Remove(idx.Name()) // read-tree writes it anew
	defer os.Remove(idx.Name())
	env := []string{"GIT_INDEX_FILE=" + idx.Name()}
	if _, err := m.gitWith(ctx, dir, env, nil, "read-tree", u+"^{tree}"); err != nil {
		return "", err
	}
	if owners := m.opts.Overlay.Owners(); len(owners) > 0 {
		args := []string{"rm", "-r", "-f", "--cached", "--quiet", "--ignore-unmatch", "--"}
		for _, o := range owners {
			args = append(args, ":(literal)user/"+o)
		}
		if _, err := m.gitWith(ctx, dir, env, nil, args...); err != nil {
			return "", err
		}
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var info bytes.Buffer
	for _, p := range paths {
		out, err := m.git(ctx, dir, files[p], "hash-object", "-w", "--stdin")
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&info, "100644 %s\t%s\n", strings.TrimSpace(string(out)), p)
	}
	if info.Len() > 0 {
		if _, err := m.gitWith(ctx, dir, env, info.Bytes(), "update-index", "--add", "--index-info"); err != nil {
			return "", err
		}
	}
	out, err := m.gitWith(ctx, dir, env, nil, "write-tree")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

func (m *Mirror) treeOf(ctx context.Context, dir, c string) (string, error) {
	out, err := m.git(ctx, dir, nil, "rev-parse", "--verify", "--quiet", c+"^{tree}")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// Recompose rebuilds the served index from the upstream commit it was
// last built from and the overlay as it is now, without asking upstream:
// what a publish calls so its module is served at once, upstream down or
// not. In a fleet it moves the fleet's tip too.
func (m *Mirror) Recompose(ctx context.Context) (Changes, error) {
	if m.opts.Overlay == nil {
		return Changes{}, nil
	}
	unlock, err := m.lockSync(ctx)
	if err != nil {
		return Changes{}, err
	}
	defer unlock()
	if !m.hasRepo() {
		return Changes{}, ErrNotReady
	}
	old := m.Commit()
	var next string
	if m.opts.Fleet != nil {
		a, err := m.agree(ctx, m.opts.Dir, "")
		if err != nil {
			return Changes{}, err
		}
		next = a.target
	} else if next, err = m.target(ctx, m.opts.Dir, "", old); err != nil {
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
