package indexsync

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moonbit-registry/internal/testsupport"
	"moonbit-registry/module"
)

func TestReadRealIndex(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	src := realIndex(t)
	up := startUpstream(t, src)
	m := newTestMirror(t, up.IndexURL(), nil)
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	mods, err := m.Lookups().Modules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(mods) != 887 {
		t.Errorf("Modules: %d, want 887", len(mods))
	}
	total := 0
	for _, mod := range mods {
		vs, err := m.Lookups().Versions(ctx, mod)
		if err != nil {
			t.Fatalf("Versions(%q): %v", mod, err)
		}
		total += len(vs)
		for _, v := range vs {
			if _, ok, err := m.Lookups().Checksum(ctx, mod, v.Version); !ok || err != nil {
				t.Fatalf("Checksum(%s@%s) = %v, %v", mod, v.Version, ok, err)
			}
		}
	}
	if total != 6548 {
		t.Errorf("versions in index: %d, want 6548", total)
	}

	tests := []struct {
		module, version string
		wantDep         string
	}{
		{"moonbitlang/lex/runtime", "0.1.0", ""},
		{"illusory0x0/🐫", "", ""},
		{"CAIMEOX/原来可以发中文包", "", ""},
		{"tonyfettes/tree_sitter", "0.1.2", "tonyfettes/tree_sitter_language"},
	}
	for _, tt := range tests {
		t.Run(tt.module, func(t *testing.T) {
			vs, err := m.Lookups().Versions(ctx, tt.module)
			if err != nil || len(vs) == 0 {
				t.Fatalf("Versions = %d, %v", len(vs), err)
			}
			version := tt.version
			if version == "" {
				version = vs[0].Version
			}
			data, err := os.ReadFile(filepath.Join(src, "user", filepath.FromSlash(tt.module)+".index"))
			if err != nil {
				t.Fatal(err)
			}
			v, ok, err := m.Lookups().Lookup(ctx, tt.module, version)
			if err != nil || !ok || v.Module != tt.module || !strings.Contains(string(data), string(v.Raw)) {
				t.Fatalf("Lookup = %+v, %v, %v", v, ok, err)
			}
			sum, ok, err := m.Lookups().Checksum(ctx, tt.module, version)
			if err != nil || !ok || !strings.Contains(string(v.Raw), sum) {
				t.Fatalf("Checksum = %q, %v, %v", sum, ok, err)
			}
			if tt.wantDep != "" {
				if d, ok := v.Deps[tt.wantDep]; !ok || d.Path == "" {
					t.Fatalf("dep %s = %+v (all: %+v)", tt.wantDep, d, v.Deps)
				}
			}
		})
	}
}

func TestLookupUnknown(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	up := startUpstream(t, smallIndex(t))
	m := newTestMirror(t, up.IndexURL(), nil)
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ module, version string }{
		{"alice/foo", "9.9.9"},        // unknown version
		{"alice/nope", "0.1.0"},       // unknown module
		{"nobody/x", "0.1.0"},         // unknown owner
		{"alice/foo/deeper", "0.1.0"}, // a file where a directory would be
		{"bob/lib", "0.1.0"},          // a directory, not a module
	}
	for _, tt := range tests {
		sum, ok, err := m.Lookups().Checksum(ctx, tt.module, tt.version)
		if ok || err != nil || sum != "" {
			t.Errorf("Checksum(%s, %s) = %q, %v, %v; want not found", tt.module, tt.version, sum, ok, err)
		}
	}
	if _, err := m.Lookups().Versions(ctx, "alice/nope"); !errors.Is(err, module.ErrModuleNotFound) {
		t.Errorf("Versions of unknown module: %v", err)
	}
}

func TestChecksumMalformed(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	up := startUpstream(t, smallIndex(t))
	if err := up.Index.AddVersionRaw(ctx, "alice/foo", []byte(`{"version": "0.7.0", "checksum": "ABC"}`)); err != nil {
		t.Fatal(err)
	}
	m := newTestMirror(t, up.IndexURL(), nil)
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := m.Lookups().Checksum(ctx, "alice/foo", "0.7.0"); ok || err == nil {
		t.Fatalf("malformed checksum: ok=%v err=%v", ok, err)
	}
}

func TestHostileNames(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	up := startUpstream(t, smallIndex(t))
	m := newTestMirror(t, up.IndexURL(), nil)
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// A file outside the mirror that a traversal would reach.
	outside := filepath.Join(filepath.Dir(m.Dir()), "secret.index")
	if err := os.WriteFile(outside, []byte(`{"version": "0.1.0", "checksum": "`+sum("e")+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ module, version string }{
		{"../x", "0.1.0"},
		{"../../secret", "0.1.0"},
		{"alice/../../secret", "0.1.0"},
		{"alice/..", "0.1.0"},
		{"alice/.git", "0.1.0"},
		{".git/config", "0.1.0"},
		{"/etc/passwd", "0.1.0"},
		{"alice//foo", "0.1.0"},
		{"alice/foo\x00", "0.1.0"},
		{"alice/f\x00oo", "0.1.0"},
		{"alice\\..\\..\\secret", "0.1.0"},
		{"alice/" + strings.Repeat("a", 5000), "0.1.0"},
		{strings.Repeat("a/", 300) + "b", "0.1.0"},
		{"alice/foo", "../../secret"},
		{"alice/foo", "0.1.0/../../x"},
		{"alice/foo", strings.Repeat("1", 300) + ".0.0"},
		{"alice/foo", "0.1.0\x00"},
		{"", ""},
		{"alice", "0.1.0"},
	}
	for _, tt := range tests {
		sum, ok, err := m.Lookups().Checksum(ctx, tt.module, tt.version)
		if ok || sum != "" || !errors.Is(err, module.ErrBadName) {
			t.Errorf("Checksum(%q, %q) = %q, %v, %v; want ErrBadName", tt.module, tt.version, sum, ok, err)
		}
		if tt.version == "0.1.0" {
			if _, err := m.Lookups().Versions(ctx, tt.module); !errors.Is(err, module.ErrBadName) {
				t.Errorf("Versions(%q) = %v; want ErrBadName", tt.module, err)
			}
		}
	}
}

// A symlink committed upstream, or placed in the work tree, never makes a
// lookup read a file outside the mirror.
func TestSymlinksStayInside(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	base := t.TempDir()
	secretDir := filepath.Join(base, "secret")
	if err := os.MkdirAll(secretDir, 0o755); err != nil {
		t.Fatal(err)
	}
	secretLine := `{"version": "6.6.6", "checksum": "` + sum("f") + `"}`
	if err := os.WriteFile(filepath.Join(secretDir, "x.index"), []byte(secretLine), 0o644); err != nil {
		t.Fatal(err)
	}
	upDir := filepath.Join(base, "up")
	testsupport.Git(t, "", "init", "--quiet", "--initial-branch=main", upDir)
	for p, target := range map[string]string{
		"user/evil/link.index": filepath.Join(secretDir, "x.index"),
		"user/evil2":           secretDir,
	} {
		full := filepath.Join(upDir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, full); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(upDir, "user", "evil", "ok.index"), []byte(`{"version": "0.1.0"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	testsupport.Git(t, upDir, "add", "-A")
	testsupport.Git(t, upDir, "commit", "--quiet", "-m", "symlinks")

	m := newTestMirror(t, "file://"+upDir, nil)
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for _, mod := range []string{"evil/link", "evil2/x"} {
		if _, ok, err := m.Lookups().Lookup(ctx, mod, "6.6.6"); ok {
			t.Errorf("Lookup(%s) read a file outside the mirror (err %v)", mod, err)
		}
	}
	mods, err := m.Lookups().Modules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, mod := range mods {
		if mod == "evil2/x" {
			t.Errorf("Modules followed a symlink: %v", mods)
		}
	}

	// Even a symlink placed in the work tree by someone else cannot be
	// followed outside.
	link := filepath.Join(m.Dir(), "user", "evil", "planted.index")
	if err := os.Symlink(filepath.Join(secretDir, "x.index"), link); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := m.Lookups().Lookup(ctx, "evil/planted", "6.6.6"); ok {
		t.Error("Lookup followed a planted symlink outside the mirror")
	}
	dirLink := filepath.Join(m.Dir(), "user", "planteddir")
	if err := os.Symlink(secretDir, dirLink); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := m.Lookups().Lookup(ctx, "planteddir/x", "6.6.6"); ok {
		t.Error("Lookup followed a planted directory symlink outside the mirror")
	}
}

func TestCacheInvalidatedOnlyForChangedModules(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	up := startUpstream(t, smallIndex(t))
	m := newTestMirror(t, up.IndexURL(), nil)
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for _, mod := range []string{"alice/foo", "illusory0x0/🐫"} {
		if _, err := m.Lookups().Versions(ctx, mod); err != nil {
			t.Fatal(err)
		}
	}
	if err := up.Index.AddVersion(ctx, "alice/foo", "0.8.0", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.files.cache.get("alice/foo"); ok {
		t.Error("changed module still cached")
	}
	if _, ok := m.files.cache.get("illusory0x0/🐫"); !ok {
		t.Error("unchanged module dropped from cache")
	}
}

func TestModulesCancelled(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	up := startUpstream(t, smallIndex(t))
	m := newTestMirror(t, up.IndexURL(), nil)
	if _, err := m.Lookups().Modules(ctx); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Modules before sync: %v", err)
	}
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	mods, err := m.Lookups().Modules(ctx)
	if err != nil || strings.Join(mods, " ") != "alice/foo bob/lib/nested illusory0x0/🐫" {
		t.Fatalf("Modules = %q, %v", mods, err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := m.Lookups().Modules(cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("Modules with cancelled ctx: %v", err)
	}
}
