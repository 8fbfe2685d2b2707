package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

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
		up.Faults.Delay(delay, testupstream.OnPrefix(testupstream.PrefixArchives))
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
				syscall.Sync() // the copy's writeback is not the mirror's
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

// mirAllSize is each archive's size in BenchmarkMirrorAll: every version
// of the snapshot is built and kept in the test upstream's memory.
const mirAllSize = 4 << 10

// BenchmarkMirrorAll times `mirror --all --strict --no-symbols '*'`
// (default concurrency) of every version in the snapshot (about 6,550
// archives of 4 KiB; --strict because one snapshot module needs a version
// that does not exist, --no-symbols because upstream's figure is archives
// only) into a fresh registry root, against upstream's own time to serve
// the same archives to a plain client at the same concurrency over
// keep-alive connections, and against this disk's floor (mirDiskFloor),
// interleaved round by round. It reports min, median and max of each and
// the ratios of the medians. The index is synced
// once and copied into each root untimed; roots are removed only at the
// end (on ext4 without a journal, inodes freed moments before make the
// next file creations slow). Run without -race:
//
//	go test -run '^$' -bench BenchmarkMirrorAll -benchtime 3x ./e2e/
func BenchmarkMirrorAll(b *testing.B) {
	up := testupstream.Start(b, testupstream.Options{AllArchives: true, ArchiveSize: mirAllSize})
	template := b.TempDir()
	if stdout, stderr, code := runRegistry(b, template, up.URL(), "sync"); code != 0 {
		b.Fatalf("sync: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var paths, want []string
	for _, mv := range up.Downloads.Archives() {
		paths = append(paths, arcUpstreamPath(mv.Module, mv.Version))
		want = append(want, mv.Module+"@"+mv.Version)
	}
	want = mirSorted(want)
	const concurrency = 8 // mirror.concurrency's default
	var direct, floor, mirror []time.Duration
	for b.Loop() {
		b.StopTimer()
		direct = append(direct, mirFetchAll(b, up.URL(), paths, concurrency))
		floor = append(floor, mirDiskFloor(b, b.TempDir(), paths, concurrency))
		root := b.TempDir()
		if err := os.CopyFS(filepath.Join(root, "data", "index"), os.DirFS(filepath.Join(template, "data", "index"))); err != nil {
			b.Fatal(err)
		}
		// The copy's writeback is not the mirror's: its fsyncs would
		// wait behind it.
		syscall.Sync()
		start := time.Now()
		stdout, stderr, code := runRegistry(b, root, up.URL(), "mirror", "--all", "--strict", "--no-symbols", "*")
		mirror = append(mirror, time.Since(start))
		if code != 0 {
			b.Fatalf("mirror: exit %d\n%s\n%s", code, stdout, stderr)
		}
		// A run that fetched less would make a fast, wrong figure.
		if got := mirStored(b, root); !slices.Equal(got, want) {
			b.Fatalf("stored %d archives, want %d", len(got), len(want))
		}
		b.StartTimer()
	}
	d := mirStats(b, fmt.Sprintf("upstream, %d archives", len(paths)), direct)
	f := mirStats(b, "disk floor, same files", floor)
	m := mirStats(b, "mirror --all", mirror)
	b.ReportMetric(float64(m)/float64(d), "ratio-to-upstream")
	b.ReportMetric(float64(m)/float64(f), "ratio-to-disk-floor")
	b.ReportMetric(float64(len(paths))/m.Seconds(), "archives/s")
}

// mirFetchAll GETs every path of base with n workers, each on one
// keep-alive connection, reading every body whole; it returns the wall time.
func mirFetchAll(b *testing.B, base string, paths []string, n int) time.Duration {
	b.Helper()
	return mirParallel(b, paths, n, func(work <-chan string) error {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}
		defer client.CloseIdleConnections()
		for p := range work {
			resp, err := client.Get(base + p)
			if err != nil {
				return err
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET %s: %s", p, resp.Status)
			}
		}
		return nil
	})
}

// mirParallel hands paths to n workers, each running worker until the
// channel is closed or it fails, fails b on the first error, and returns
// the wall time.
func mirParallel(b *testing.B, paths []string, n int, worker func(work <-chan string) error) time.Duration {
	b.Helper()
	work := make(chan string)
	errs := make(chan error, n)
	start := time.Now()
	for range n {
		go func() {
			err := worker(work)
			for range work { // a failed worker still drains, so the feed ends
			}
			errs <- err
		}()
	}
	for _, p := range paths {
		work <- p
	}
	close(work)
	for range n {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}

// mirDiskFloor is what storing paths' archives durably costs this disk
// alone, with nothing fetched, hashed or looked up: n workers each write
// mirAllSize bytes to a new temporary file, fsync it and rename it to its
// path under root (creating directories as needed), then one sync makes
// the directories durable, as mirror's syncfs does. It returns the wall time.
func mirDiskFloor(b *testing.B, root string, paths []string, n int) time.Duration {
	b.Helper()
	body := make([]byte, mirAllSize)
	tmp := filepath.Join(root, ".tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		b.Fatal(err)
	}
	took := mirParallel(b, paths, n, func(work <-chan string) error {
		for p := range work {
			if err := mirWriteDurably(tmp, filepath.Join(root, filepath.FromSlash(p)), body); err != nil {
				return err
			}
		}
		return nil
	})
	start := time.Now()
	syscall.Sync() // syncfs(2) is Linux's; on one filesystem the same here
	return took + time.Since(start)
}

// mirWriteDurably writes body to a new file in tmp, fsyncs it and renames
// it to path.
func mirWriteDurably(tmp, path string, body []byte) error {
	f, err := os.CreateTemp(tmp, "floor-*")
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(body); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// mirStats logs min, median and max of ds and returns the median.
func mirStats(b *testing.B, name string, ds []time.Duration) time.Duration {
	slices.Sort(ds)
	med := ds[len(ds)/2]
	b.Logf("%-28s min %8v  median %8v  max %8v", name, ds[0].Round(time.Millisecond), med.Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
	return med
}
