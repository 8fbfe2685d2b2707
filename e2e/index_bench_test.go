package e2e

import (
	"context"
	"os"
	"testing"
	"time"

	"moonbit-registry/internal/testupstream"
)

// BenchmarkShallowClone times moon's first-time index clone (git clone
// --depth 1 --single-branch --no-tags) straight from the test upstream and
// through a running registry, so one run shows what the proxy costs:
//
//	go test -run '^$' -bench BenchmarkShallowClone -benchtime 10x ./e2e/
func BenchmarkShallowClone(b *testing.B) {
	up := testupstream.Start(b, testupstream.Options{})
	reg := startRegistry(b, registryOptions{UpstreamURL: up.URL()})
	for _, bc := range []struct {
		name, base string
	}{
		{"direct", up.URL()},
		{"proxy", reg.URL},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := newMoonClient(b, bc.base)
			ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
			defer cancel()
			for b.Loop() {
				// Removing the previous clone is not part of a clone.
				b.StopTimer()
				if err := os.RemoveAll(c.indexDir); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := c.CloneIndex(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			// A clone that silently lost files would make a fast, wrong
			// figure.
			got, err := idxWorkTree(c.indexDir)
			if err != nil {
				b.Fatal(err)
			}
			if len(got) != idxSnapshotFiles {
				b.Fatalf("clone has %d files, want %d", len(got), idxSnapshotFiles)
			}
		})
	}
}
