package gitrepo

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moonbit-registry/internal/testsupport"
)

func newRunner(t *testing.T, opts Options) *Runner {
	t.Helper()
	if opts.Timeout == 0 {
		opts.Timeout = time.Minute
	}
	r, err := New(opts)
	if err != nil {
		testsupport.MissingTool(t, err.Error())
	}
	return r
}

// repo makes a repository with two commits on main and returns it with
// the two commits' ids.
func repo(t *testing.T, r *Runner) (dir, first, second string) {
	t.Helper()
	ctx := t.Context()
	dir = t.TempDir()
	env := []string{"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid"}
	for _, args := range [][]string{
		{"init", "--quiet"},
		{"commit", "--quiet", "--allow-empty", "-m", "one"},
		{"tag", "first"},
		{"commit", "--quiet", "--allow-empty", "-m", "two"},
	} {
		if _, err := r.RunEnv(ctx, dir, env, nil, args...); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if first, err = r.Commit(ctx, dir, "first"); err != nil {
		t.Fatal(err)
	}
	if second, err = r.Commit(ctx, dir, "main"); err != nil {
		t.Fatal(err)
	}
	return dir, first, second
}

func TestRunnerAnswers(t *testing.T) {
	r := newRunner(t, Options{DefaultBranch: "main"})
	ctx := t.Context()
	dir, first, second := repo(t, r)
	for _, tt := range []struct {
		name      string
		old, next string
		want      bool
	}{
		{"forward", first, second, true},
		{"backward", second, first, false},
		{"itself", second, second, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.IsAncestor(ctx, dir, tt.old, tt.next)
			if err != nil || got != tt.want {
				t.Errorf("IsAncestor(%s, %s) = %v, %v; want %v", tt.old, tt.next, got, err, tt.want)
			}
		})
	}
	if !r.HasCommit(ctx, dir, first) || r.HasCommit(ctx, dir, strings.Repeat("0", 40)) {
		t.Error("HasCommit does not tell a present commit from an absent one")
	}
	if tree, err := r.Tree(ctx, dir, second); err != nil || len(tree) != len(second) || tree == second {
		t.Errorf("Tree(%s) = %q, %v", second, tree, err)
	}
	if _, err := r.IsAncestor(ctx, dir, "no-such-rev", second); err == nil {
		t.Error("IsAncestor of an unknown revision gave no error")
	}
}

// The process environment never reaches git: a GIT_DIR pointing elsewhere
// changes nothing.
func TestEnvironmentIsScrubbed(t *testing.T) {
	r := newRunner(t, Options{DefaultBranch: "main"})
	dir, _, second := repo(t, r)
	t.Setenv("GIT_DIR", filepath.Join(t.TempDir(), "elsewhere"))
	t.Setenv("GIT_CONFIG_GLOBAL", filepath.Join(t.TempDir(), "global"))
	if c, err := r.Commit(t.Context(), dir, "main"); err != nil || c != second {
		t.Errorf("Commit with GIT_DIR set = %q, %v; want %s", c, err, second)
	}
	for _, kv := range Env() {
		if strings.HasPrefix(kv, "GIT_DIR=") {
			t.Errorf("Env passes %s on", kv)
		}
	}
}

// A failing command's error carries git's stderr, bounded.
func TestErrorCarriesStderr(t *testing.T) {
	r := newRunner(t, Options{})
	_, err := r.Run(t.Context(), t.TempDir(), nil, "rev-parse", "--verify", "HEAD")
	var ge *Error
	if !errors.As(err, &ge) || !strings.Contains(err.Error(), "not a git repository") {
		t.Fatalf("error = %v, want a *gitrepo.Error with git's message", err)
	}
	b := &limitedBuffer{buf: &bytes.Buffer{}, max: 4}
	if n, _ := b.Write([]byte("abcdef")); n != 6 || b.buf.String() != "abcd" {
		t.Errorf("limitedBuffer kept %q (reported %d)", b.buf.String(), n)
	}
}

// A command killed on its timeout leaves no lock file behind.
func TestTimeoutRemovesLocks(t *testing.T) {
	bin := t.TempDir()
	slow := filepath.Join(bin, "git")
	if err := os.WriteFile(slow, []byte("#!/bin/sh\nexec sleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := newRunner(t, Options{Path: slow, Timeout: 200 * time.Millisecond, LockFiles: []string{"index.lock"}})
	dir := t.TempDir()
	lock := filepath.Join(dir, ".git", "index.lock")
	if err := os.MkdirAll(filepath.Dir(lock), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lock, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := r.Run(context.Background(), dir, nil, "status")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want the deadline", err)
	}
	if _, err := os.Stat(lock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock file after the kill: %v", err)
	}
}
