package e2e

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"moonbit-registry/internal/testupstream"
)

// BenchmarkArchiveMiss10MiB times one miss of a 10 MiB archive through a
// running registry against the same download straight from the test
// upstream, interleaved (direct, then through the registry, for a fresh
// version each round): time to the first body byte and to the last. It
// reports min, median and max of each and the ratios of the medians. Run
// without -race:
//
//	go test -run '^$' -bench BenchmarkArchiveMiss10MiB -benchtime 8x ./e2e/
func BenchmarkArchiveMiss10MiB(b *testing.B) {
	const size, rounds = 10 << 20, 8
	versions := []string{"0.4.2", "0.4.3", "0.4.4", "0.4.5", "0.4.6", "0.4.7", "0.4.8", "0.4.9"}
	var sel []testupstream.ModuleVersion
	for _, v := range versions {
		sel = append(sel, testupstream.ModuleVersion{Module: arcModX, Version: v})
	}
	up := testupstream.Start(b, testupstream.Options{Archives: sel, ArchiveSize: size})
	client := &http.Client{Timeout: time.Minute}
	timeGet := func(u string) (first, total time.Duration) {
		b.Helper()
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("User-Agent", "mooncake/0.1.0")
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		buf := make([]byte, 64<<10)
		n, err := resp.Body.Read(buf)
		first = time.Since(start)
		m, err2 := io.Copy(io.Discard, resp.Body)
		total = time.Since(start)
		if (err != nil && err != io.EOF) || err2 != nil || resp.StatusCode != http.StatusOK || int64(n)+m != size {
			b.Fatalf("GET %s: %d, %d bytes, %v %v", u, resp.StatusCode, int64(n)+m, err, err2)
		}
		return first, total
	}
	var dFirst, dTotal, rFirst, rTotal []time.Duration
	for b.Loop() {
		b.StopTimer()
		reg := startRegistry(b, registryOptions{UpstreamURL: up.URL()}) // every version a miss
		for _, v := range versions[:rounds] {
			f, t := timeGet(up.URL() + arcUpstreamPath(arcModX, v))
			dFirst, dTotal = append(dFirst, f), append(dTotal, t)
			f, t = timeGet(arcOneSegmentURL(reg.URL, arcModX, v))
			rFirst, rTotal = append(rFirst, f), append(rTotal, t)
		}
		reg.Stop(b)
		b.StartTimer()
	}
	stats := func(name string, ds []time.Duration) time.Duration {
		slices.Sort(ds)
		med := ds[len(ds)/2]
		b.Logf("%-22s min %8v  median %8v  max %8v", name, ds[0].Round(10*time.Microsecond), med.Round(10*time.Microsecond), ds[len(ds)-1].Round(10*time.Microsecond))
		return med
	}
	df, dt := stats("direct first byte", dFirst), stats("direct total", dTotal)
	rf, rt := stats("registry first byte", rFirst), stats("registry total", rTotal)
	b.ReportMetric(float64(rf)/float64(df), "first-byte-ratio")
	b.ReportMetric(float64(rt)/float64(dt), "total-ratio")
	b.Log(fmt.Sprintf("median ratios: first byte %.2fx, total %.2fx", float64(rf)/float64(df), float64(rt)/float64(dt)))
}
