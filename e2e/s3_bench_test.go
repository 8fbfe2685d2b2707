package e2e

import (
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"moonbit-registry/internal/testsupport"
	"moonbit-registry/internal/testupstream"
)

// BenchmarkArchiveHitS3VsLocal compares cache hits of one 100 KiB archive
// served from the S3 store (versitygw on this machine) and from the local
// disk store: two registries, rounds interleaved (local, S3, local, ...),
// each a fixed time with 64 keep-alive connections. It reports the ratio
// S3/local of requests per second, min, median and max over the rounds.
//
//	go test -run '^$' -bench BenchmarkArchiveHitS3VsLocal -benchtime 1x ./e2e/
func BenchmarkArchiveHitS3VsLocal(b *testing.B) {
	const version, size, rounds, roundTime = "0.4.6", 100 << 10, 5, 3 * time.Second
	up := testupstream.Start(b, testupstream.Options{
		Archives:    []testupstream.ModuleVersion{{Module: arcModX, Version: version}},
		ArchiveSize: size,
	})
	local := startRegistry(b, registryOptions{UpstreamURL: up.URL()})
	srv := testsupport.StartS3(b, s3Bucket)
	remote := startRegistry(b, registryOptions{UpstreamURL: up.URL(), Env: []string{
		"MOONBIT_REGISTRY_STORE_BACKEND=s3", "MOONBIT_REGISTRY_STORE_S3_ENDPOINT=" + srv.Endpoint,
		"MOONBIT_REGISTRY_STORE_S3_BUCKET=" + s3Bucket, "MOONBIT_REGISTRY_STORE_S3_PATH_STYLE=true",
	}})
	urls := []string{arcOneSegmentURL(local.URL, arcModX, version), arcOneSegmentURL(remote.URL, arcModX, version)}
	for _, u := range urls {
		if res := arcFetch(b, http.MethodGet, u, nil); res.status != http.StatusOK || len(res.body) != size {
			b.Fatalf("warming %s: %d, %d bytes", u, res.status, len(res.body))
		}
	}
	fetched := up.Count(arcUpstreamPath(arcModX, version))
	b.ResetTimer()
	for range b.N {
		var ratios, localRates, s3Rates []float64
		for range rounds {
			l := hitRate(b, urls[0], size, roundTime)
			s := hitRate(b, urls[1], size, roundTime)
			localRates, s3Rates = append(localRates, l), append(s3Rates, s)
			ratios = append(ratios, s/l)
		}
		slices.Sort(ratios)
		b.ReportMetric(ratios[0], "ratio-min")
		b.ReportMetric(ratios[len(ratios)/2], "ratio-median")
		b.ReportMetric(ratios[len(ratios)-1], "ratio-max")
		b.Logf("req/s local %v, S3 %v; S3/local min %.2f median %.2f max %.2f",
			rounded(localRates), rounded(s3Rates), ratios[0], ratios[len(ratios)/2], ratios[len(ratios)-1])
	}
	if got := up.Count(arcUpstreamPath(arcModX, version)); got != fetched {
		b.Errorf("upstream saw %d archive requests during the benchmark", got-fetched)
	}
}

// hitRate sends GETs of u on arcBenchConns connections for d and returns
// the requests per second.
func hitRate(b *testing.B, u string, size int, d time.Duration) float64 {
	var done atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	start := time.Now()
	for range arcBenchConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client, closeClient := arcBenchClient()
			defer closeClient()
			for time.Now().Before(stop) {
				if n, err := arcBenchGet(client, u); err != nil || n != int64(size) {
					failed.Add(1)
					continue
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d requests to %s failed", n, u)
	}
	return float64(done.Load()) / time.Since(start).Seconds()
}

func rounded(xs []float64) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = int(x + 0.5)
	}
	return out
}
