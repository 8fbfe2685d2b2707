package indexsync

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"moonbit-registry/gitrepo"
)

// What a crash or a power loss leaves in the mirror never stops it for
// good: a stale lock is cleared, a damaged repository is rebuilt beside the
// old one and swapped in, and the next sync brings what upstream added.
func TestSyncRepairsDamagedMirror(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		damage func(t *testing.T, gitDir string)
	}{
		{"stale index.lock", func(t *testing.T, gitDir string) {
			if err := os.WriteFile(filepath.Join(gitDir, "index.lock"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"stale main.lock", func(t *testing.T, gitDir string) {
			if err := os.WriteFile(filepath.Join(gitDir, "refs", "heads", "main.lock"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"emptied object files", func(t *testing.T, gitDir string) {
			n := 0
			err := filepath.WalkDir(filepath.Join(gitDir, "objects"), func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				n++
				os.Chmod(p, 0o644)
				return os.Truncate(p, 0)
			})
			if err != nil || n == 0 {
				t.Fatalf("emptied %d object files: %v", n, err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxT(t)
			up := startUpstream(t, smallIndex(t))
			m := newTestMirror(t, up.IndexURL(), nil)
			if _, err := m.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			tt.damage(t, filepath.Join(m.Dir(), ".git"))
			if err := up.Index.AddVersion(ctx, "alice/foo", "3.0.0", nil); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if _, err := m.Sync(ctx); err != nil {
				t.Fatalf("sync after the damage: %v", err)
			}
			t.Logf("repaired and synced in %v", time.Since(start))
			if _, ok, err := m.Lookups().Lookup(ctx, "alice/foo", "3.0.0"); err != nil || !ok {
				t.Errorf("new version after the repair: %v, %v", ok, err)
			}
			head, _ := up.Index.Head(ctx)
			if st := m.Status(); st.Commit != head || m.Ready() != nil {
				t.Errorf("status after the repair: %+v, ready: %v", st, m.Ready())
			}
			// And it keeps working.
			if err := up.Index.AddVersion(ctx, "alice/foo", "3.1.0", nil); err != nil {
				t.Fatal(err)
			}
			if _, err := m.Sync(ctx); err != nil {
				t.Fatalf("the sync after: %v", err)
			}
			if _, ok, _ := m.Lookups().Lookup(ctx, "alice/foo", "3.1.0"); !ok {
				t.Error("the sync after the repair did not bring the next version")
			}
			entries, _ := os.ReadDir(filepath.Dir(m.Dir()))
			for _, e := range entries {
				if e.Name() != filepath.Base(m.Dir()) && e.Name() != filepath.Base(lockPath(m.Dir())) {
					t.Errorf("left beside the mirror: %s", e.Name())
				}
			}
		})
	}
}

// A checkout that fails part way (a full disk) leaves half-written index
// files: lookups refuse them (ErrTreeIncomplete, not a wrong answer) until
// a sync checks main out in full; and a process that starts on a tree an
// interrupted checkout left restores it first.
func TestFailedCheckoutIsNeverRead(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	up := startUpstream(t, smallIndex(t))
	m := newTestMirror(t, up.IndexURL(), nil)
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// git that fails every checkout after cutting alice/foo.index short.
	failing := filepath.Join(t.TempDir(), "git")
	script := "#!/bin/sh\nfor a in \"$@\"; do if [ \"$a\" = checkout ]; then echo '{\"name\": \"alice/foo\", \"ver' > user/alice/foo.index; echo 'No space left on device' >&2; exit 128; fi; done\nexec " + realGit(t) + " \"$@\"\n"
	if err := os.WriteFile(failing, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	real := m.git
	useGit(m, gitAt(t, failing))
	if err := up.Index.AddVersion(ctx, "alice/foo", "5.0.0", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Sync(ctx); err == nil {
		t.Fatal("sync with a failing checkout succeeded")
	}
	if _, _, err := m.Lookups().Lookup(ctx, "alice/foo", "0.1.0"); !errors.Is(err, ErrTreeIncomplete) {
		t.Errorf("lookup after a failed checkout = %v, want ErrTreeIncomplete", err)
	}

	// A new process on this tree restores it before answering.
	m2 := newTestMirror(t, up.IndexURL(), func(o *Options) { o.Dir = m.Dir() })
	if v, ok, err := m2.Lookups().Lookup(ctx, "alice/foo", "0.1.0"); err != nil || !ok || v.Checksum != sum("a") {
		t.Errorf("lookup in a process started on the cut tree: %+v, %v, %v", v, ok, err)
	}

	useGit(m, real)
	if _, err := m.Sync(ctx); err != nil {
		t.Fatalf("sync after the disk has room again: %v", err)
	}
	if _, ok, err := m.Lookups().Lookup(ctx, "alice/foo", "5.0.0"); err != nil || !ok {
		t.Errorf("lookup after a good sync: %v, %v", ok, err)
	}
}

// A tree left incomplete is checked out again by the next sync even when
// upstream has not moved.
func TestIncompleteTreeRepairedWithoutUpstreamChange(t *testing.T) {
	ctx := ctxT(t)
	up := startUpstream(t, smallIndex(t))
	m := newTestMirror(t, up.IndexURL(), nil)
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// Cut a file, as a crash mid-checkout does, and start a process whose
	// git cannot check out (the disk is still full).
	if err := os.WriteFile(filepath.Join(m.Dir(), "user", "alice", "foo.index"), []byte(`{"name": "ali`), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	script := "#!/bin/sh\nfor a in \"$@\"; do if [ \"$a\" = checkout ]; then echo 'No space left on device' >&2; exit 128; fi; done\nexec " + realGit(t) + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "git"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	real := gitAt(t, realGit(t))
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	m2 := newTestMirror(t, up.IndexURL(), func(o *Options) { o.Dir = m.Dir() })
	if _, _, err := m2.Lookups().Lookup(ctx, "alice/foo", "0.1.0"); !errors.Is(err, ErrTreeIncomplete) {
		t.Fatalf("lookup on a cut tree that could not be restored = %v, want ErrTreeIncomplete", err)
	}
	useGit(m2, real) // room on the disk again
	if _, err := m2.Sync(ctx); err != nil {
		t.Fatalf("sync with upstream unchanged: %v", err)
	}
	if v, ok, err := m2.Lookups().Lookup(ctx, "alice/foo", "0.1.0"); err != nil || !ok || v.Checksum != sum("a") {
		t.Errorf("lookup after the sync: %+v, %v, %v", v, ok, err)
	}
}

// A mirror whose directory is a mount point (a volume) cannot be renamed:
// the rebuild swaps its contents instead. Needs mount privileges.
func TestSyncRepairsDamagedMirrorOnMountPoint(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	up := startUpstream(t, smallIndex(t))
	dir := filepath.Join(t.TempDir(), "data", "index")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount -t tmpfs not permitted here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	m := newTestMirror(t, up.IndexURL(), func(o *Options) { o.Dir = dir })
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(filepath.Join(dir, ".git", "objects"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		os.Chmod(p, 0o644)
		return os.Truncate(p, 0)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Index.AddVersion(ctx, "alice/foo", "3.0.0", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Sync(ctx); err != nil {
		t.Fatalf("sync after the damage: %v", err)
	}
	if _, ok, err := m.Lookups().Lookup(ctx, "alice/foo", "3.0.0"); err != nil || !ok {
		t.Errorf("new version after the repair: %v, %v", ok, err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != ".git" && e.Name() != "user" {
			t.Errorf("left in the mirror: %s", e.Name())
		}
	}
}

// realGit is the path of the git on PATH.
func realGit(t *testing.T) string {
	p, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// useGit makes every part of m run git through r.
func useGit(m *Mirror, r *gitrepo.Runner) {
	m.git, m.comp.git = r, r
	if m.fleet != nil {
		m.fleet.git = r
	}
}

// gitAt is a git runner for the mirror that runs the program at path.
func gitAt(t *testing.T, path string) *gitrepo.Runner {
	r, err := gitrepo.New(gitrepo.Options{Path: path, Timeout: time.Minute, DefaultBranch: localBranch, LockFiles: lockFiles})
	if err != nil {
		t.Fatal(err)
	}
	return r
}
