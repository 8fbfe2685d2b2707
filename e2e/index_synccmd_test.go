package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"moonbit-registry/e2e/testupstream"
)

// TestIndexSyncCommandThenDownload: after `moonbit-registry sync` on the
// root of a running server, the server serves the git index with the new
// version at once, so a client that pulled it must be able to download
// it. The server had read (and cached) the module's index before.
func TestIndexSyncCommandThenDownload(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	const module, version = "illusory0x0/🐫", "99.0.0"
	up := testupstream.Start(t, testupstream.Options{Archives: []testupstream.ModuleVersion{testupstream.EveryVersion(module)}})
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL()})
	c := newMoonClient(t, reg.URL)
	if err := c.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Download(ctx, module, up.Versions(module)[0]); err != nil {
		t.Fatal(err)
	}
	if err := up.AddVersion(ctx, module, version, nil); err != nil {
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
