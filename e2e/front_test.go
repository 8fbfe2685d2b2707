package e2e

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moonbit-registry/internal/testupstream"
)

// TestNginxFront runs deploy/nginx-front.conf with the real nginx in front
// of a registry: a miss goes to the registry and is stored; the next
// request for it is served by nginx from the store (the registry never
// sees it), in both URL forms; the index and everything else pass through;
// with upstream down, stored archives are still served and a miss is the
// registry's 504.
func TestNginxFront(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{testupstream.EveryVersion(cliModule)}})
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL()})
	conf, err := os.ReadFile("../deploy/nginx-front.conf")
	if err != nil {
		t.Fatal(err)
	}
	for old, repl := range map[string]string{
		"server 127.0.0.1:8081;":                          "server " + strings.TrimPrefix(reg.URL, "http://") + ";",
		"alias /var/lib/moonbit-registry/data/packages/;": "alias " + filepath.Join(reg.Root, "data", "packages") + "/;",
	} {
		if !bytes.Contains(conf, []byte(old)) {
			t.Fatalf("deploy/nginx-front.conf has no %q", old)
		}
		conf = bytes.Replace(conf, []byte(old), []byte(repl), 1)
	}
	front := startNginx(t, conf)
	c := newMoonClient(t, front)
	if err := c.CloneIndex(ctx); err != nil {
		t.Fatalf("clone through nginx: %v", err)
	}
	versions := up.Index.Versions(cliModule)
	first := versions[0]
	if body, err := c.Download(ctx, cliModule, first); err != nil || !bytes.Equal(body, up.Downloads.Archive(cliModule, first)) {
		t.Fatalf("miss through nginx: %v", err)
	}
	if n := cliWaitAttempts(reg, first, 1); n != 1 {
		t.Fatalf("the miss reached the registry %d times, want 1", n)
	}
	for range 3 {
		if body, err := c.Download(ctx, cliModule, first); err != nil || !bytes.Equal(body, up.Downloads.Archive(cliModule, first)) {
			t.Fatalf("hit through nginx: %v", err)
		}
	}
	plain, err := c.get(ctx, front+"/user/"+cliModule+"/"+first+".zip")
	if err != nil || !bytes.Equal(plain, up.Downloads.Archive(cliModule, first)) {
		t.Errorf("the plain-slash form through nginx: %v", err)
	}
	if n := cliWaitAttempts(reg, first, 2); n != 1 {
		t.Errorf("hits reached the registry: %d requests, want only the first miss", n)
	}
	if err := up.Down(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Download(ctx, cliModule, first); err != nil {
		t.Errorf("a stored archive with upstream down: %v", err)
	}
	if res := arcFetch(t, http.MethodGet, c.archiveURL(cliModule, versions[1]), nil); res.status != http.StatusGatewayTimeout {
		t.Errorf("a miss with upstream down: %d, want the registry's 504", res.status)
	}
}
