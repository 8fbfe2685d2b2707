// Command miss measures the concurrent-miss case of the registry binary: N
// clients ask at once for one archive the cache does not have yet.
//
//	go build -o /tmp/moonbit-registry . && go run ./bench/miss -registry /tmp/moonbit-registry
//
// It starts the test upstream in-process (package testupstream, so it can
// hold each archive request for -delay, as a distant upstream would), starts
// the registry on a fresh root pointed at it, waits for /readyz, then fires
// -n GETs of the same archive together and prints, one "key value" a line:
// the wall time until the last answer, how many answers were 200 with the
// full body, how many requests the upstream received for that archive, the
// registry's "archive fetched" log lines, and the registry's peak RSS. The
// registry's log goes to -log (default: a file in the temporary root).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"moonbit-registry/internal/testupstream"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "miss:", err)
		os.Exit(1)
	}
}

type options struct {
	registry string
	n        int
	size     int
	delay    time.Duration
	module   string
	version  string
	logFile  string
	timeout  time.Duration
}

func run() error {
	var o options
	flag.StringVar(&o.registry, "registry", "", "path of the moonbit-registry binary (required)")
	flag.IntVar(&o.n, "n", 100, "concurrent requests for the one missing archive")
	flag.IntVar(&o.size, "size", 100<<10, "archive size in bytes")
	flag.DurationVar(&o.delay, "delay", 0, "hold each upstream archive request this long before answering")
	flag.StringVar(&o.module, "module", "moonbitlang/x", "module of the archive")
	flag.StringVar(&o.version, "version", "0.4.6", "version of the archive")
	flag.StringVar(&o.logFile, "log", "", "file for the registry's log (default: in the temporary root, removed)")
	flag.DurationVar(&o.timeout, "timeout", 2*time.Minute, "bound on the whole run")
	flag.Parse()
	if o.registry == "" || flag.NArg() > 0 || o.n < 1 {
		flag.Usage()
		return errors.New("-registry is required, -n must be positive, no arguments")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	return measure(ctx, o)
}

func measure(ctx context.Context, o options) error {
	up, err := testupstream.New(ctx, testupstream.Options{
		Archives:    []testupstream.ModuleVersion{{Module: o.module, Version: o.version}},
		ArchiveSize: o.size,
	})
	if err != nil {
		return fmt.Errorf("test upstream: %w", err)
	}
	defer up.Close()
	if o.delay > 0 {
		up.Faults.Delay(o.delay, testupstream.OnPrefix(testupstream.PrefixArchives))
	}

	root, err := os.MkdirTemp("", "bench-miss-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	if o.logFile == "" {
		o.logFile = filepath.Join(root, "registry.log")
	}
	logf, err := os.Create(o.logFile)
	if err != nil {
		return err
	}
	defer logf.Close()

	// Info level: the "archive fetched" lines are counted below.
	cmd := exec.Command(o.registry, "--dir", root, "--log-format", "json", "--log-level", "info",
		"serve", "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(),
		"MOONBIT_REGISTRY_UPSTREAM_INDEX_URL="+up.IndexURL(),
		"MOONBIT_REGISTRY_UPSTREAM_DOWNLOAD_URL="+up.DownloadURL(),
		"MOONBIT_REGISTRY_UPSTREAM_API_URL="+up.URL(),
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()

	base, err := waitReady(ctx, o.logFile)
	if err != nil {
		return err
	}
	path := "/user/" + o.module + "/" + o.version + ".zip"
	// The one-segment form current moon clients send.
	u := base + "/user/" + strings.ReplaceAll(o.module+"/"+o.version, "/", "%2F") + ".zip"
	before := up.Count(path)

	res := fire(ctx, u, o.n)
	ok := 0
	var firstErr string
	for _, r := range res.each {
		switch {
		case r.err != nil:
			firstErr = keepFirst(firstErr, r.err.Error())
		case r.status != http.StatusOK:
			firstErr = keepFirst(firstErr, fmt.Sprintf("status %d", r.status))
		case r.n != int64(o.size):
			firstErr = keepFirst(firstErr, fmt.Sprintf("%d bytes, want %d", r.n, o.size))
		default:
			ok++
		}
	}
	lat := make([]time.Duration, 0, len(res.each))
	for _, r := range res.each {
		lat = append(lat, r.d)
	}
	slices.Sort(lat)

	fetched, err := countLines(o.logFile, `"message":"archive fetched"`)
	if err != nil {
		return err
	}
	hwm, err := vmHWM(cmd.Process.Pid)
	if err != nil {
		return err
	}
	fmt.Printf("requests %d\n", o.n)
	fmt.Printf("archive_bytes %d\n", o.size)
	fmt.Printf("upstream_delay %s\n", o.delay)
	fmt.Printf("total_ms %.1f\n", ms(res.total))
	fmt.Printf("min_ms %.1f\n", ms(lat[0]))
	fmt.Printf("p50_ms %.1f\n", ms(lat[len(lat)/2]))
	fmt.Printf("max_ms %.1f\n", ms(lat[len(lat)-1]))
	fmt.Printf("ok_200 %d\n", ok)
	fmt.Printf("upstream_requests %d\n", up.Count(path)-before)
	fmt.Printf("archive_fetched_log_lines %d\n", fetched)
	fmt.Printf("registry_peak_rss_kib %d\n", hwm)
	if ok != o.n {
		return fmt.Errorf("%d of %d requests failed, first: %s", o.n-ok, o.n, firstErr)
	}
	return nil
}

func keepFirst(first, s string) string {
	if first == "" {
		return s
	}
	return first
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

type result struct {
	status int
	n      int64
	d      time.Duration
	err    error
}

type fired struct {
	total time.Duration
	each  []result
}

// fire sends n GETs of u at once, each on its own connection, released
// together once every goroutine is ready so they really overlap.
func fire(ctx context.Context, u string, n int) fired {
	out := fired{each: make([]result, n)}
	var ready, done sync.WaitGroup
	gate := make(chan struct{})
	ready.Add(n)
	done.Add(n)
	for i := range n {
		go func() {
			defer done.Done()
			tr := &http.Transport{DisableCompression: true, DisableKeepAlives: true}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			if err != nil {
				out.each[i].err = err
				ready.Done()
				return
			}
			req.Header.Set("User-Agent", "mooncake/0.1.0")
			ready.Done()
			<-gate
			t0 := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				out.each[i] = result{err: err, d: time.Since(t0)}
				return
			}
			m, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			out.each[i] = result{status: resp.StatusCode, n: m, d: time.Since(t0), err: err}
		}()
	}
	ready.Wait()
	start := time.Now()
	close(gate)
	done.Wait()
	out.total = time.Since(start)
	return out
}

var addrRe = regexp.MustCompile(`"message":"listening".*"addr":"([^"]+)"|"addr":"([^"]+)".*"message":"listening"`)

// waitReady waits for the registry's "listening" log line, then for /readyz
// (the first index sync) to answer 200, and returns the base URL.
func waitReady(ctx context.Context, logFile string) (string, error) {
	var base string
	for base == "" {
		b, err := os.ReadFile(logFile)
		if err != nil {
			return "", err
		}
		if m := addrRe.FindSubmatch(b); m != nil {
			base = "http://" + string(m[1]) + string(m[2])
			break
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return "", fmt.Errorf("waiting for the registry to listen: %w\n%s", err, b)
		}
	}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
		if err != nil {
			return "", err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base, nil
			}
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return "", fmt.Errorf("waiting for %s/readyz: %w", base, err)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func countLines(file, substr string) (int, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), substr) {
			n++
		}
	}
	return n, sc.Err()
}

// vmHWM is a process's peak resident set size in KiB.
func vmHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}
