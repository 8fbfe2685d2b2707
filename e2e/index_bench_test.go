package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
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

// BenchmarkIndexFreshness: how long after upstream publishes a version a
// client pulling the index through a registry sees it, pulling every
// 100 ms as a busy build farm would; straight from upstream it is the
// next pull. The registry has the default index.check_interval (10 s);
// the harness sets sync_interval to an hour, so only the checks on
// request bring versions in. It reports the worst and the median over 3
// publishes, and how many times the registry looked at upstream's tip
// (git ls-remote, counted in its debug log) per minute meanwhile. Run
// without -race:
//
//	go test -run '^$' -bench BenchmarkIndexFreshness -benchtime 1x ./e2e/
func BenchmarkIndexFreshness(b *testing.B) {
	const publishes, pullEvery, giveUp = 3, 100 * time.Millisecond, time.Minute
	up := testupstream.Start(b, testupstream.Options{})
	var lags []time.Duration
	var looks int
	var watched time.Duration
	for b.Loop() {
		b.StopTimer()
		reg := startRegistry(b, registryOptions{UpstreamURL: up.URL()})
		c := newMoonClient(b, reg.URL)
		ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
		if err := c.CloneIndex(ctx); err != nil {
			b.Fatal(err)
		}
		before := strings.Count(reg.Logs(), `"args":["ls-remote"`)
		start := time.Now()
		for i := range publishes {
			module := fmt.Sprintf("freshbench/m%d", len(lags))
			if err := up.Index.AddVersion(ctx, module, "0.1.0", nil); err != nil {
				b.Fatal(err)
			}
			published := time.Now()
			for {
				if err := c.PullIndex(ctx); err != nil {
					b.Fatal(err)
				}
				if vs, _ := c.Versions(module); len(vs) == 1 {
					break
				}
				if time.Since(published) > giveUp {
					b.Fatalf("publish %d: not visible through the registry after %s", i, giveUp)
				}
				time.Sleep(pullEvery)
			}
			lags = append(lags, time.Since(published))
		}
		watched += time.Since(start)
		looks += strings.Count(reg.Logs(), `"args":["ls-remote"`) - before
		cancel()
		reg.Stop(b)
		b.StartTimer()
	}
	if looks == 0 {
		b.Fatal("no look at upstream's tip in the registry's log: the count is broken, or the binary logs git commands differently")
	}
	slices.Sort(lags)
	b.Logf("visible after: min %v, median %v, max %v; upstream's tip looked at %d times in %v",
		lags[0].Round(10*time.Millisecond), lags[len(lags)/2].Round(10*time.Millisecond), lags[len(lags)-1].Round(10*time.Millisecond), looks, watched.Round(time.Second))
	b.ReportMetric(lags[len(lags)-1].Seconds(), "worst-s")
	b.ReportMetric(lags[len(lags)/2].Seconds(), "median-s")
	b.ReportMetric(float64(looks)/watched.Minutes(), "looks/min")
}
