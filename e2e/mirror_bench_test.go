package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"encoding/json"

	"moonbit-registry/internal/testsupport"
	"moonbit-registry/internal/testupstream"
)

// mirBenchArchives is how many archives one benchmark run mirrors, and
// mirBenchSize their size: small enough to keep 500 of them in the test
// upstream's memory, big enough that bytes are moved, not just requests.
const (
	mirBenchArchives = 500
	mirBenchSize     = 32 << 10
)

// BenchmarkMirror500 times `mirror --offline --strict --concurrency N` of
// 500 explicit module@version patterns (the first 500 of the snapshot's
// versions, sorted) from the test upstream into a fresh registry root, at
// N = 1, 8 and 32. The index is synced once and copied into each root
// untimed, so the figure is selection plus fetch-verify-store (and process
// start). Run without -race:
//
//	go test -run '^$' -bench 'BenchmarkMirror500' -benchtime 5x ./e2e/
//
// Note that the cache bounds upstream fetches at
// cache.max_concurrent_fetches (16 by default) whatever --concurrency says.
func BenchmarkMirror500(b *testing.B) {
	mirBenchMirror(b, 0)
}

// BenchmarkMirror500Latency is BenchmarkMirror500 with every archive
// response held 5ms, a stand-in for network latency to the real upstream.
func BenchmarkMirror500Latency(b *testing.B) {
	mirBenchMirror(b, 5*time.Millisecond)
}

func mirBenchMirror(b *testing.B, delay time.Duration) {
	src, err := testupstream.DefaultIndexSource()
	if err != nil {
		b.Fatal(err)
	}
	pick := mirFirstVersions(b, src, mirBenchArchives)
	archives := make([]testupstream.ModuleVersion, len(pick))
	for i, mv := range pick {
		module, version, _ := strings.Cut(mv, "@")
		archives[i] = testupstream.ModuleVersion{Module: module, Version: version}
	}
	up := testupstream.Start(b, testupstream.Options{Archives: archives, ArchiveSize: mirBenchSize})
	if delay > 0 {
		up.Delay(delay, testupstream.OnPrefix(testupstream.PrefixArchives))
	}
	// One index sync for all runs.
	template := b.TempDir()
	if stdout, stderr, code := runRegistry(b, template, up.URL(), "sync"); code != 0 {
		b.Fatalf("sync: exit %d\n%s\n%s", code, stdout, stderr)
	}
	want := mirSorted(pick)

	for _, c := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("c=%d", c), func(b *testing.B) {
			args := append([]string{"mirror", "--offline", "--strict", "--concurrency", fmt.Sprint(c)}, pick...)
			var root string
			for b.Loop() {
				b.StopTimer()
				root = b.TempDir()
				if err := os.CopyFS(filepath.Join(root, "data", "index"), os.DirFS(filepath.Join(template, "data", "index"))); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				stdout, stderr, code := runRegistry(b, root, up.URL(), args...)
				if code != 0 {
					b.Fatalf("mirror: exit %d\n%s\n%s", code, stdout, stderr)
				}
			}
			b.StopTimer()
			// A run that fetched less would make a fast, wrong figure.
			if got := mirStored(b, root); !slices.Equal(got, want) {
				b.Fatalf("stored %d archives, want %d", len(got), len(want))
			}
			b.ReportMetric(float64(mirBenchArchives*b.N)/b.Elapsed().Seconds(), "archives/s")
		})
	}
}

// mirFirstVersions returns the first n "module@version" of the index tree
// at src, sorted as strings.
func mirFirstVersions(b *testing.B, src string, n int) []string {
	b.Helper()
	seen := map[string]bool{}
	err := testsupport.WalkIndex(src, func(module string, data []byte) error {
		var line struct {
			Version string `json:"version"`
		}
		if json.Unmarshal(data, &line) == nil && line.Version != "" {
			seen[module+"@"+line.Version] = true
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	all := make([]string, 0, len(seen))
	for mv := range seen {
		all = append(all, mv)
	}
	slices.Sort(all)
	if len(all) < n {
		b.Fatalf("the index has %d versions, want at least %d", len(all), n)
	}
	return all[:n]
}
