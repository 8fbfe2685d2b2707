package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"moonbit-registry/internal/testupstream"
)

// arcBenchConns is the number of concurrent keep-alive connections.
const arcBenchConns = 64

// BenchmarkArchiveHit measures cache hits of the running binary: a 100 KiB
// and a 10 MiB archive, fetched first so every timed request is a hit, then
// requested by 64 goroutines over 64 keep-alive connections. It reports
// requests/s, p50 and p99 latency and the registry process's peak RSS
// (VmHWM, reset just before the load where the kernel allows it) while
// serving. Run it without -race, so the binary is the one users get:
//
//	go test -run '^$' -bench BenchmarkArchiveHit -benchtime 5s ./e2e/
func BenchmarkArchiveHit(b *testing.B) {
	const version = "0.4.6"
	for _, bc := range []struct {
		name string
		size int
	}{
		{"100KiB", 100 << 10},
		{"10MiB", 10 << 20},
	} {
		up := testupstream.Start(b, testupstream.Options{
			Archives:    []testupstream.ModuleVersion{{Module: arcModX, Version: version}},
			ArchiveSize: bc.size,
		})
		reg := startRegistry(b, registryOptions{UpstreamURL: up.URL()})
		u := arcOneSegmentURL(reg.URL, arcModX, version)
		if res := arcFetch(b, http.MethodGet, u, nil); res.status != http.StatusOK || len(res.body) != bc.size {
			b.Fatalf("warming the cache: %d, %d bytes", res.status, len(res.body))
		}
		fetched := up.Count(arcUpstreamPath(arcModX, version))
		b.Run(bc.name, func(b *testing.B) {
			arcBenchHits(b, reg, u, bc.size)
		})
		// A figure measured while the proxy went upstream would not be a
		// cache-hit figure.
		if got := up.Count(arcUpstreamPath(arcModX, version)); got != fetched {
			b.Errorf("upstream saw %d archive requests during the benchmark", got-fetched)
		}
		reg.Stop(b)
	}
}

// arcBenchHits runs b.N GETs of u spread over arcBenchConns workers.
func arcBenchHits(b *testing.B, reg *registry, u string, size int) {
	pid := reg.cmd.Process.Pid
	// Writing 5 to clear_refs resets VmHWM to the current RSS, so the
	// peak is the serving one, not startup's (index clone, first fetch).
	resetHWM := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
	if resetHWM != nil {
		b.Logf("cannot reset the peak RSS (%v); reporting the process's lifetime peak", resetHWM)
	}
	var (
		next    atomic.Int64
		failed  atomic.Int64
		firstMu sync.Mutex
		first   string
		wg      sync.WaitGroup
	)
	lat := make([][]time.Duration, arcBenchConns)
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < arcBenchConns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client, done := arcBenchClient()
			defer done()
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				n, err := arcBenchGet(client, u)
				lat[w] = append(lat[w], time.Since(t0))
				if err == nil && n != int64(size) {
					err = fmt.Errorf("%d bytes, want %d", n, size)
				}
				if err != nil {
					failed.Add(1)
					firstMu.Lock()
					if first == "" {
						first = err.Error()
					}
					firstMu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d requests failed, first: %s", n, b.N, first)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p float64) float64 {
		i := min(len(all)-1, int(float64(len(all))*p))
		return float64(all[i]) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	if hwm, err := arcVmHWM(pid); err != nil {
		b.Logf("peak RSS: %v", err)
	} else {
		b.ReportMetric(float64(hwm)/(1<<20), "peak-RSS-MiB")
	}
}

// arcBenchClient is one benchmark worker's client: one keep-alive
// connection, no compression. done closes it.
func arcBenchClient() (client *http.Client, done func()) {
	tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
	return &http.Client{Transport: tr, Timeout: time.Minute}, tr.CloseIdleConnections
}

// arcBenchGet fetches u and discards the body, returning its length.
func arcBenchGet(client *http.Client, u string) (int64, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("User-Agent", "mooncake/0.1.0")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %s", resp.Status)
	}
	return n, err
}

// arcVmHWM reads a process's peak resident set size in bytes.
func arcVmHWM(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// BenchmarkSymbolsPeakRSS: 16 clients fetch a 50 MiB symbols.zip at once
// from a fresh registry (miss: one upstream stream each, teed to the
// store), then 16 at once again (hits from disk). It reports the registry
// process's peak RSS over both: bodies stream, so it stays far below the
// bodies' size (the goal is at most 200 MiB). Run without -race:
//
//	go test -run '^$' -bench BenchmarkSymbolsPeakRSS -benchtime 1x ./e2e/
func BenchmarkSymbolsPeakRSS(b *testing.B) {
	const size, clients = 50 << 20, 16
	up := testupstream.Start(b, testupstream.Options{})
	symbols := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	up.Downloads.SetSymbols(symbols)
	for b.Loop() {
		b.StopTimer()
		reg := startRegistry(b, registryOptions{UpstreamURL: up.URL()})
		pid := reg.cmd.Process.Pid
		b.StartTimer()
		for _, round := range []string{"miss", "hit"} {
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			for range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, err := http.Get(reg.URL + "/symbols.zip")
					if err != nil {
						errs <- err
						return
					}
					defer resp.Body.Close()
					n, err := io.Copy(io.Discard, resp.Body)
					if err != nil || n != size || resp.StatusCode != http.StatusOK {
						errs <- fmt.Errorf("%s: %d, %d bytes, %v", round, resp.StatusCode, n, err)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				b.Error(err)
			}
		}
		b.StopTimer()
		hwm, err := arcVmHWM(pid)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(hwm)/(1<<20), "peak-RSS-MiB")
		reg.Stop(b)
		b.StartTimer()
	}
}
