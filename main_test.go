package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestHoistGlobalFlags(t *testing.T) {
	globals := globalFlagNames(newApp())
	for _, tt := range []struct{ in, want string }{
		{"r mirror --dir /srv x", "r --dir /srv mirror x"},
		{"r mirror --dir=/srv --strict x", "r --dir=/srv mirror --strict x"},
		{"r --log-level warn sync --config c.toml", "r --log-level warn --config c.toml sync"},
		{"r --dir a serve --listen 127.0.0.1:1", "r --dir a serve --listen 127.0.0.1:1"},
		{"r mirror -- --dir x", "r mirror -- --dir x"},
		{"r --version", "r --version"},
		{"r", "r"},
		{"r status --dir", "r --dir status"},
	} {
		got := hoistGlobalFlags(strings.Fields(tt.in), globals)
		if !slices.Equal(got, strings.Fields(tt.want)) {
			t.Errorf("%q -> %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDidYouMean(t *testing.T) {
	cmds := newApp().Commands
	for _, tt := range []struct{ in, want string }{
		{"sevre", "serve"}, {"mirorr", "mirror"}, {"stat", "status"}, {"updat", "update"}, {"xyzzy", ""},
	} {
		got := didYouMean(tt.in, cmds)
		if tt.want == "" && got != "" || tt.want != "" && !strings.Contains(got, `"`+tt.want+`"`) {
			t.Errorf("didYouMean(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// run runs the command line in-process, as main does, and returns its
// exit code and what it wrote.
func run(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	a := newApp()
	var out, errOut bytes.Buffer
	a.Writer, a.ErrWriter, a.Reader = &out, &errOut, strings.NewReader(stdin)
	a.ExitErrHandler = func(*cli.Context, error) {} // main decides the exit code
	err := a.RunContext(t.Context(), hoistGlobalFlags(append([]string{"moonbit-registry"}, args...), globalFlagNames(a)))
	if err != nil {
		code = exitCode(err)
		fmt.Fprintln(&errOut, err)
	}
	return code, out.String(), errOut.String()
}

// TestUsageErrorsExitTwo: every usage error exits 2 with a message that
// says what to do, before anything is read or written.
func TestUsageErrorsExitTwo(t *testing.T) {
	root := t.TempDir()
	for _, tt := range []struct {
		args []string
		says string
	}{
		{[]string{"auth", "bogus"}, `unknown command "bogus"`},
		{[]string{"auth", "hash-pass"}, `did you mean "hash-password"`},
		{[]string{"auth", "hash-password"}, "--user"},
		{[]string{"--dir", root, "mirror", "moonbitlang/x", "--strict"}, "flags go before patterns"},
		{[]string{"--dir", root, "verify", "moonbitlang/x", "--purge"}, "flags go before patterns"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"mirror", "--no-such-flag"}, "no-such-flag"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, _, stderr := run(t, "secret\n", tt.args...)
			if code != 2 || !strings.Contains(stderr, tt.says) {
				t.Errorf("exit %d, stderr %q; want 2 saying %q", code, stderr, tt.says)
			}
		})
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("a refused command wrote into the registry root: %v", entries)
	}
}

// TestMissingRootIsAnError: a --dir that does not exist is not an empty
// registry: status, verify and serve say so and exit 1, creating nothing.
func TestMissingRootIsAnError(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "typo")
	for _, args := range [][]string{{"status"}, {"status", "--json"}, {"verify"}, {"sync"}, {"serve", "--offline"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, _, stderr := run(t, "", append([]string{"--dir", missing}, args...)...)
			if code != 1 || !strings.Contains(stderr, "does not exist") || !strings.Contains(stderr, "init") {
				t.Errorf("exit %d, stderr %q; want 1 saying it does not exist", code, stderr)
			}
			if _, err := os.Stat(missing); !os.IsNotExist(err) {
				t.Fatalf("the missing root was created (%v)", err)
			}
		})
	}
}

// TestLocalStatusJSON: status --json without a server leaves out what only
// a server knows (uptime, traffic, upstream's health) instead of claiming
// zeros and an unreachable upstream.
func TestLocalStatusJSON(t *testing.T) {
	code, stdout, stderr := run(t, "", "--dir", t.TempDir(), "status", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(stdout), &st); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	index, _ := st["index"].(map[string]any)
	store, _ := st["store"].(map[string]any)
	if index == nil || store == nil || index["commit"] == nil || store["archives"] == nil {
		t.Fatalf("status --json lacks index.commit or store.archives: %s", stdout)
	}
	for _, key := range []string{"uptime_seconds", "last_hour", "fetches_in_flight"} {
		if _, ok := st[key]; ok {
			t.Errorf("local status has %q: %s", key, stdout)
		}
	}
	for _, key := range []string{"upstream_ok", "upstream_error", "upstream_checked"} {
		if _, ok := index[key]; ok {
			t.Errorf("local status has index.%s: %s", key, stdout)
		}
	}
}
