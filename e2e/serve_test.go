package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestServeWithoutConfigAnswersHealthz(t *testing.T) {
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
