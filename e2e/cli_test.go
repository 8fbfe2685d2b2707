package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"moonbit-registry/internal/testupstream"
)

// e2eStamp is the release stamp the suite's binary is built with.
const e2eStamp = "v9.8.7-e2e"

// TestReleaseVersionStamp: a build stamped at link time as the README's
// release build is shows the stamp in --version. (What an unstamped build
// shows is app's TestVersionOf.)
func TestReleaseVersionStamp(t *testing.T) {
	t.Parallel()
	if os.Getenv("MOONBIT_REGISTRY_E2E_BINARY") != "" {
		t.Skip("MOONBIT_REGISTRY_E2E_BINARY: a binary built elsewhere, stamped or not")
	}
	cmd := exec.Command(registryBin, "--version")
	cmd.Env = append(cmd.Environ(), noRaceExitSleep)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "moonbit-registry version "+e2eStamp {
		t.Errorf("--version: %q, %v", out, err)
	}
}

func TestUnknownCommandSuggests(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ typed, want string }{
		{"sevre", `did you mean "serve"?`},
		{"mirorr", `did you mean "mirror"?`},
		{"stat", `did you mean "status"?`},
		{"frobnicate", ""},
	} {
		_, stderr, code := runRegistry(t, t.TempDir(), "", tt.typed)
		if code != 2 || !strings.Contains(stderr, `unknown command "`+tt.typed+`"`) {
			t.Errorf("%s: exit %d, %q", tt.typed, code, stderr)
		}
		if got := strings.Contains(stderr, "did you mean"); got != (tt.want != "") || !strings.Contains(stderr, tt.want) {
			t.Errorf("%s: %q, want a suggestion %q", tt.typed, stderr, tt.want)
		}
	}
}

// TestStatusCommand: status --json from a running server and from the
// registry root tell the same index commit and archive count.
func TestStatusCommand(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{testupstream.EveryVersion(cliModule)}})
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL()})
	for _, v := range up.Index.Versions(cliModule) {
		if res := arcFetch(t, "GET", arcOneSegmentURL(reg.URL, cliModule, v), nil); res.status != 200 {
			t.Fatalf("warm %s: %d", v, res.status)
		}
	}
	type status struct {
		Index struct {
			Commit     string `json:"commit"`
			AgeSeconds int64  `json:"age_seconds"`
		} `json:"index"`
		Store struct {
			Archives int64 `json:"archives"`
			Bytes    int64 `json:"bytes"`
		} `json:"store"`
	}
	parse := func(where, out string) status {
		var st status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("%s: %v\n%s", where, err, out)
		}
		return st
	}
	stdout, stderr, code := runRegistry(t, t.TempDir(), "", "status", "--json", "--server", reg.URL)
	if code != 0 {
		t.Fatalf("status --server: exit %d\n%s", code, stderr)
	}
	server := parse("from the server", stdout)
	want := int64(len(up.Index.Versions(cliModule)))
	if server.Index.Commit == "" || server.Index.AgeSeconds < 0 || server.Store.Archives != want || server.Store.Bytes <= 0 {
		t.Errorf("from the server: %+v, want a commit and %d archives", server, want)
	}
	reg.Stop(t)
	stdout, stderr, code = runRegistry(t, reg.Root, "", "status", "--json")
	if code != 0 {
		t.Fatalf("status from the root: exit %d\n%s", code, stderr)
	}
	if local := parse("from the root", stdout); local.Index.Commit != server.Index.Commit || local.Store != server.Store || local.Index.AgeSeconds < 0 {
		t.Errorf("from the root %+v, from the server %+v", local, server)
	}
	stdout, _, code = runRegistry(t, reg.Root, "", "status")
	if code != 0 || !strings.Contains(stdout, server.Index.Commit) || !strings.Contains(stdout, "archives") {
		t.Errorf("status for people: exit %d\n%s", code, stdout)
	}
}

// TestBashCompletion loads `completion bash` into bash and completes a
// command and a flag, as a shell would.
func TestBashCompletion(t *testing.T) {
	t.Parallel()
	script := `source <("$BIN" completion bash)
COMP_WORDS=("$BIN" mir); COMP_CWORD=1; _moonbit_registry_complete; echo "${COMPREPLY[@]}"
COMP_WORDS=("$BIN" mirror --st); COMP_CWORD=2; _moonbit_registry_complete; echo "${COMPREPLY[@]}"`
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = append(cmd.Environ(), "BIN="+registryBin, noRaceExitSleep)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Join(strings.Fields(string(out)), " ") != "mirror --strict" {
		t.Errorf("completions: %q, %v; want mirror, then --strict", out, err)
	}
}

// TestGlobalFlagsAfterTheCommand: --dir (and the other global flags) work
// after the command too.
func TestGlobalFlagsAfterTheCommand(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	cmd := exec.Command(registryBin, "init", root)
	cmd.Env = append(cmd.Environ(), noRaceExitSleep)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	cmd = exec.Command(registryBin, "config", "--dir", root, "--log-level", "warn")
	cmd.Env = append(cmd.Environ(), noRaceExitSleep)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "# file: "+filepath.Join(root, "registry.toml")) {
		t.Errorf("config --dir after the command: %v\n%s", err, out)
	}
}
