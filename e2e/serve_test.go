package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestServeWithoutConfigAnswersHealthz(t *testing.T) {
	t.Parallel()
	r := startRegistry(t, registryOptions{NoWaitReady: true})
	resp, err := http.Get(r.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		t.Fatalf("healthz = %d %q", resp.StatusCode, body)
	}
	r.Stop(t)
	if code := r.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0\n%s", code, r.Logs())
	}
	if !strings.Contains(r.Logs(), `"path":"/healthz"`) {
		t.Errorf("no access log line for /healthz:\n%s", r.Logs())
	}
}

func TestServeRefusesBadConfig(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "registry.toml"), []byte("[server]\nlisten = \"nowhere\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runRegistry(t, root, "", "serve")
	if code == 0 || !strings.Contains(stderr, "server.listen") || !strings.Contains(stderr, "line 2") {
		t.Fatalf("exit %d, stderr %q: want a non-zero exit naming server.listen and line 2", code, stderr)
	}
}

func TestInitTwice(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if _, stderr, code := runRegistry(t, root, "", "init"); code != 0 {
		t.Fatalf("init: exit %d: %s", code, stderr)
	}
	file := filepath.Join(root, "registry.toml")
	if err := os.WriteFile(file, []byte("# mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runRegistry(t, root, "", "init")
	if code == 0 || !strings.Contains(stderr, "--force") {
		t.Fatalf("second init: exit %d, stderr %q; want refusal mentioning --force", code, stderr)
	}
	if b, _ := os.ReadFile(file); string(b) != "# mine\n" {
		t.Fatal("refused init changed registry.toml")
	}
	if _, stderr, code := runRegistry(t, root, "", "init", "--force"); code != 0 {
		t.Fatalf("init --force: exit %d: %s", code, stderr)
	}
	if b, _ := os.ReadFile(file); !strings.Contains(string(b), "[upstream]") {
		t.Fatal("init --force did not rewrite registry.toml")
	}
}

// With server.drain_delay, a shutdown signal first turns /readyz to 503
// while requests are still served, then the process exits cleanly.
func TestServeDrainDelayReportsNotReady(t *testing.T) {
	t.Parallel()
	r := startRegistry(t, registryOptions{NoWaitReady: true, Env: []string{"MOONBIT_REGISTRY_SERVER_DRAIN_DELAY=3s"}})
	client := &http.Client{Timeout: 5 * time.Second}
	get := func(path string) (int, string, error) {
		resp, err := client.Get(r.URL + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !r.WaitLog(context.Background(), "still serving until the drain delay ends", 5*time.Second) {
		t.Fatalf("no drain log line:\n%s", r.Logs())
	}
	code, body, err := get("/readyz")
	if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down") {
		t.Errorf("/readyz during the drain delay: %d %q %v, want 503 shutting down", code, body, err)
	}
	if code, _, err := get("/metrics"); err != nil || code != http.StatusOK {
		t.Errorf("a request during the drain delay: %d %v, want it served", code, err)
	}
	select {
	case <-r.done:
	case <-time.After(20 * time.Second):
		t.Fatal("no exit within 20s of SIGTERM with a 3s drain delay")
	}
	if c := r.cmd.ProcessState.ExitCode(); c != 0 {
		t.Errorf("exit code %d, want 0", c)
	}
}

// TestAccessLogKeptOnSIGTERM: the access log is buffered (flushed every
// second), and a SIGTERM still writes every line out: 50 requests answered
// just before the signal are all in the log once the process has exited.
func TestAccessLogKeptOnSIGTERM(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t, registryOptions{NoWaitReady: true})
	for i := range 50 {
		resp, err := http.Get(fmt.Sprintf("%s/healthz?n=%d", reg.URL, i))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	reg.Stop(t)
	if n := strings.Count(reg.Logs(), `"path":"/healthz","status":200`); n != 50 {
		t.Errorf("%d of the 50 requests are in the access log after SIGTERM", n)
	}
}
