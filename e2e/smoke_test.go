package e2e

import (
	"context"
	"testing"

	"moonbit-registry/internal/testupstream"
)

// TestMoonClientThroughProxy is the whole path in one: clone the index
// through the proxy and download a module's archives, checked against it.
func TestMoonClientThroughProxy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{
		testupstream.EveryVersion("moonbitlang/lex/runtime"),
		testupstream.EveryVersion("illusory0x0/🐫"),
	}})
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL()})
	client := newMoonClient(t, reg.URL)
	if err := client.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"moonbitlang/lex/runtime", "illusory0x0/🐫"} {
		versions, err := client.Versions(m)
		if err != nil || len(versions) == 0 {
			t.Fatalf("versions of %s: %v %v", m, versions, err)
		}
		for _, v := range versions {
			if _, err := client.Download(ctx, m, v); err != nil {
				t.Error(err)
			}
		}
	}
}
