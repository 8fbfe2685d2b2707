package e2e

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"moonbit-registry/internal/testupstream"
)

// TestIndexSyncCommandThenDownload: after `moonbit-registry sync` on the
// root of a running server, the server serves the git index with the new
// version at once, so a client that pulled it must be able to download
// it. The server had read (and cached) the module's index before.
func TestIndexSyncCommandThenDownload(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	const module, version = "illusory0x0/🐫", "99.0.0"
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{testupstream.EveryVersion(module)}})
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL()})
	c := newMoonClient(t, reg.URL)
	if err := c.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Download(ctx, module, up.Index.Versions(module)[0]); err != nil {
		t.Fatal(err)
	}
	if err := up.Index.AddVersion(ctx, module, version, nil); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runRegistry(t, reg.Root, up.URL(), "sync")
	if code != 0 || !strings.Contains(stdout, "added "+module+"@"+version+"\n") {
		t.Fatalf("sync: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if err := c.PullIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if !idxHasVersion(c, module, version) {
		t.Fatalf("%s@%s not in the client's index after sync and pull", module, version)
	}
	if _, err := c.Download(ctx, module, version); err != nil {
		t.Errorf("the server serves %s@%s in its git index but not its archive: %v", module, version, err)
	}
}

// TestChangedChecksumDropsCachedArchive: when a sync brings a new checksum
// for a version already cached, the cached bytes are dropped rather than
// served as an immutable hit the client would reject.
func TestChangedChecksumDropsCachedArchive(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	const module = "moonbitlang/lex/runtime"
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{testupstream.EveryVersion(module)}})
	version := up.Index.Versions(module)[0]
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL()})
	c := newMoonClient(t, reg.URL)
	if err := c.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Download(ctx, module, version); err != nil {
		t.Fatal(err)
	}
	stored := arcStorePath(reg.Root, module, version)
	if _, err := os.Stat(stored); err != nil {
		t.Fatalf("archive not cached: %v", err)
	}
	// Upstream republishes the version with another checksum.
	newSum := strings.Repeat("ab", 32)
	line := fmt.Sprintf(`{"name": %q, "version": %q, "checksum": %q}`, module, version, newSum)
	if err := up.Index.AddVersionRaw(ctx, module, []byte(line)); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := runRegistry(t, reg.Root, up.URL(), "sync"); code != 0 {
		t.Fatalf("sync: exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(stored); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the archive cached under the old checksum is still stored (%v)", err)
	}
	// Upstream still sends the old bytes, which no longer match: refused,
	// never served as a hit under the new checksum.
	// (502, or a streamed transfer cut short before its last byte.)
	res, cut := arcFetchMaybeCut(t, arcOneSegmentURL(reg.URL, module, version))
	if res.status != http.StatusBadGateway && cut == nil {
		t.Errorf("after the checksum changed: %d with %d whole bytes, want 502 or a cut transfer (upstream bytes do not match the new checksum)", res.status, len(res.body))
	}
}

// TestCommandExitCodes: failures exit 1 whatever a program underneath
// exited with (git's 128 for an unreachable upstream), usage errors 2, and
// an error names its cause once, not its own prefix twice.
func TestCommandExitCodes(t *testing.T) {
	t.Parallel()
	synced := t.TempDir()
	up := startUpstream(t, testupstream.Options{})
	if _, stderr, code := runRegistry(t, synced, up.URL(), "sync"); code != 0 {
		t.Fatalf("sync: exit %d: %s", code, stderr)
	}
	for _, tt := range []struct {
		name string
		root string
		args []string
		code int
		says string
	}{
		{"sync, upstream unreachable", t.TempDir(), []string{"sync"}, 1, "index sync from"},
		{"mirror, upstream unreachable", t.TempDir(), []string{"mirror", "moonbitlang/x"}, 1, "index sync from"},
		{"mirror, bad pattern", synced, []string{"mirror", "--offline", "no-slash"}, 2, "no-slash"},
		{"verify, unknown module", synced, []string{"verify", "nobody/nothing"}, 2, "nobody/nothing"},
		{"unknown flag", synced, []string{"sync", "--no-such-flag"}, 2, "no-such-flag"},
		{"unknown command", synced, []string{"snyc"}, 2, "snyc"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// Port 1 on loopback: nothing listens, git fails with 128.
			_, stderr, code := runRegistry(t, tt.root, "http://127.0.0.1:1", tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.says) {
				t.Errorf("exit %d, stderr %q; want exit %d naming %q", code, stderr, tt.code, tt.says)
			}
			if strings.Count(stderr, "moonbit-registry:") > 1 {
				t.Errorf("stderr repeats the prefix: %q", stderr)
			}
		})
	}
}
