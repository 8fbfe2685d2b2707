// Package e2e runs the real moonbit-registry binary against a real test
// upstream (git smart HTTP and archives over HTTP on 127.0.0.1) and checks
// what a moon client would see.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"moonbit-registry/internal/testupstream"
)

// e2eParallel is how many tests marked parallel run at once by default.
const e2eParallel = 4

// e2eOwners are the owners whose modules the tests name; the upstream the
// tests start serves their modules and everything those depend on
// (e2eIndex), about a quarter of the snapshot, so every clone, pack and
// checkout costs about a quarter. A test that needs the whole snapshot says so.
var e2eOwners = []string{"moonbitlang", "AdUhTkJm", "ZijianFeng33", "illusory0x0", "mizchi",
	"bzy-debug", "yj-qin", "ryota0624", "CAIMEOX"}

// e2eIndex is that part of the snapshot, written once by TestMain.
var e2eIndex string

// startUpstream starts a test upstream on e2eIndex unless opts names
// another index.
func startUpstream(t testing.TB, opts testupstream.Options) *testupstream.Upstream {
	t.Helper()
	if opts.IndexSource == "" {
		opts.IndexSource = e2eIndex
	}
	return testupstream.Start(t, opts)
}

// registryBin is the binary under test, built once by TestMain (or the one
// MOONBIT_REGISTRY_E2E_BINARY names).
var registryBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	flag.Parse()
	// The tests that run in parallel mostly wait for processes, git and the
	// network: more of them than cores at once, unless -parallel says.
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		flag.Set("test.parallel", strconv.Itoa(e2eParallel))
	}
	if testing.Short() {
		// The fast tier: every test here runs the built binary.
		fmt.Println("e2e: the end-to-end suite does not run with -short")
		return 0
	}
	dir, err := os.MkdirTemp("", "moonbit-registry-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	snapshot, err := testupstream.DefaultIndexSource()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	e2eIndex = filepath.Join(dir, "index")
	if _, err := testupstream.SubsetIndex(snapshot, e2eIndex, e2eOwners); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Benchmarks may measure another build (bench/run.sh's BASELINE).
	if bin := os.Getenv("MOONBIT_REGISTRY_E2E_BINARY"); bin != "" {
		// Tests run in e2e/: a relative path would name another file.
		if !filepath.IsAbs(bin) {
			fmt.Fprintf(os.Stderr, "MOONBIT_REGISTRY_E2E_BINARY=%s: give an absolute path\n", bin)
			return 2
		}
		registryBin = bin
		return m.Run()
	}
	registryBin = filepath.Join(dir, "moonbit-registry")
	// Stamped as the README's release build is, so --version can be
	// checked without a build of its own (TestReleaseVersionStamp).
	args := []string{"build", "-ldflags", "-X moonbit-registry/app.stamp=" + e2eStamp, "-o", registryBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "..")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the registry binary:", err)
		return 1
	}
	return m.Run()
}

// registryOptions configures one registry process.
type registryOptions struct {
	// Root is the registry root; a temp dir when empty. Reusing a root across
	// restarts keeps the mirror and the cache.
	Root string
	// UpstreamURL is the test upstream's base URL: index at /git/index,
	// archives and symbols at the root, API and assets too.
	UpstreamURL string
	// Env adds MOONBIT_REGISTRY_* settings (or anything else).
	Env []string
	// Args are extra `serve` flags, e.g. "--offline".
	Args []string
	// NoWaitReady returns as soon as the server listens, before /readyz
	// says the index mirror is there.
	NoWaitReady bool
	// Command, if set, is the whole argument list instead of the default
	// one (it must log JSON and serve on a port it logs); Root and Args are
	// then not used for it.
	Command []string
}

// registry is a running `moonbit-registry serve` subprocess.
type registry struct {
	Root string
	URL  string // base URL, e.g. http://127.0.0.1:PORT
	cmd  *exec.Cmd
	done chan struct{}
	logs *logBuffer
}

// startRegistry starts `moonbit-registry serve` on a free loopback port and
// waits until it listens. It is stopped (SIGTERM, then SIGKILL) at cleanup.
func startRegistry(t testing.TB, opts registryOptions) *registry {
	t.Helper()
	if opts.Root == "" {
		opts.Root = t.TempDir()
	}
	if opts.UpstreamURL == "" {
		// Never the real mooncakes.io from a test: a closed loopback port.
		opts.UpstreamURL = "http://127.0.0.1:1"
	}
	args := append([]string{"--dir", opts.Root, "--log-format", "json", "--log-level", "debug",
		"serve", "--listen", "127.0.0.1:0"}, opts.Args...)
	if opts.Command != nil {
		args = opts.Command
	}
	cmd := exec.Command(registryBin, args...)
	cmd.Env = append(os.Environ(), noRaceExitSleep, "MOONBIT_REGISTRY_INDEX_SYNC_INTERVAL=1h")
	cmd.Env = append(cmd.Env, upstreamEnv(opts.UpstreamURL)...)
	cmd.Env = append(cmd.Env, opts.Env...)
	logs := &logBuffer{}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &registry{Root: opts.Root, cmd: cmd, done: make(chan struct{}), logs: logs}
	addr := make(chan string, 1)
	logsRead := make(chan struct{})
	go func() {
		defer close(logsRead)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			logs.add(line)
			var rec struct {
				Message string `json:"message"`
				Addr    string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Message == "listening" {
				select {
				case addr <- rec.Addr:
				default:
				}
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	// Wait only once the log is read to its end: Wait closes the pipe, and
	// the last lines (the buffered access log, written at exit) would be lost.
	go func() { <-logsRead; cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		r.Stop(t)
		if t.Failed() {
			t.Logf("registry log:\n%s", logs.String())
		}
	})
	select {
	case a := <-addr:
		r.URL = "http://" + a
	case <-r.done:
		t.Fatalf("registry exited before listening:\n%s", logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("registry did not listen within 60s:\n%s", logs.String())
	}
	if !opts.NoWaitReady {
		r.WaitReady(t, 60*time.Second)
	}
	return r
}

// WaitReady polls /readyz until it answers 200, failing the test after d.
func (r *registry) WaitReady(t testing.TB, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		resp, err := http.Get(r.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry not ready within %v (last: %v)\n%s", d, err, r.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop sends SIGTERM and waits for a clean exit, killing it after 30s.
func (r *registry) Stop(t testing.TB) {
	select {
	case <-r.done:
		return
	default:
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		r.cmd.Process.Kill()
		<-r.done
		t.Errorf("registry did not stop within 30s of SIGTERM")
	}
}

// Kill stops the process abruptly, as a crash would.
func (r *registry) Kill() {
	r.cmd.Process.Kill()
	<-r.done
}

// Logs returns everything the process logged so far.
func (r *registry) Logs() string { return r.logs.String() }

// WaitLog waits until a log line contains substr, for at most d.
func (r *registry) WaitLog(ctx context.Context, substr string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if strings.Contains(r.logs.String(), substr) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// runRegistry runs a one-shot command (e.g. "sync", "mirror") to completion
// and returns its stdout, stderr and exit code.
func runRegistry(t testing.TB, root, upstreamURL string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, registryBin, append([]string{"--dir", root, "--log-format", "json"}, args...)...)
	if upstreamURL == "" {
		upstreamURL = "http://127.0.0.1:1"
	}
	cmd.Env = append(append(os.Environ(), noRaceExitSleep), upstreamEnv(upstreamURL)...)
	return runCommand(t, cmd)
}

// runCommand runs a prepared one-shot command and returns its stdout,
// stderr and exit code; only a failure to run it at all fails the test.
func runCommand(t testing.TB, cmd *exec.Cmd) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("%v: %v", cmd.Args, err)
	}
	return out.String(), errb.String(), code
}

// noRaceExitSleep drops the race detector's one-second pause at exit, which
// would otherwise add a second to every command a test runs.
const noRaceExitSleep = "GORACE=atexit_sleep_ms=0"

// upstreamEnv points every upstream URL of the registry at a test upstream.
func upstreamEnv(base string) []string {
	return []string{
		"MOONBIT_REGISTRY_UPSTREAM_INDEX_URL=" + base + "/git/index",
		"MOONBIT_REGISTRY_UPSTREAM_DOWNLOAD_URL=" + base,
		"MOONBIT_REGISTRY_UPSTREAM_API_URL=" + base,
	}
}

// logBuffer collects log lines from a subprocess, safe for concurrent use.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *logBuffer) add(line string) {
	b.mu.Lock()
	b.lines = append(b.lines, line)
	b.mu.Unlock()
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}
