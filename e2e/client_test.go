package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"moonbit-registry/internal/testupstream"
)

// The tests here follow the client changes of August to November 2026
// (docs/protocol.md, "Client versions"), one row each.

const cliModule = "moonbitlang/lex/runtime"

// fakeMoon puts a `moon` on a fresh PATH directory that reports the given
// build date for `moon version` and logs `moon update` with the registry it
// was given. date "" means no moon at all.
func fakeMoon(t *testing.T, date string) (pathDir, log string) {
	t.Helper()
	pathDir = t.TempDir()
	log = filepath.Join(t.TempDir(), "moon.log")
	if date == "" {
		return pathDir, log
	}
	script := fmt.Sprintf(`#!/bin/sh
case "$1" in
version) echo "moon 0.1.%s (abc1234 %s)" ;;
update) echo "update MOONCAKES_REGISTRY=$MOONCAKES_REGISTRY" >> %q ;;
*) exit 2 ;;
esac
`, strings.ReplaceAll(date, "-", ""), date, log)
	if err := os.WriteFile(filepath.Join(pathDir, "moon"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return pathDir, log
}

// TestClientConfigForms: update --write-config writes the form the
// installed client reads (or the one --format names), every key pointing
// at the registry; a client reading that file clones, downloads and fetches
// symbols and search only through the registry; --reset restores exactly
// what was there.
func TestClientConfigForms(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{testupstream.EveryVersion(cliModule)}})
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL()})
	base := reg.URL
	legacy := map[string]string{"registry": base, "index": base + "/git/index", "symbols": base + "/symbols.zip"}
	split := map[string]string{"api": base, "index": base + "/git/index", "download": base, "symbols": base + "/symbols.zip"}
	tests := []struct {
		name      string
		moonDate  string // "" for no moon on PATH
		args      []string
		before    *string // config.json before, nil for none
		wantForm  string
		wantKeys  map[string]string
		wantMoonU bool // moon update was run
	}{
		{name: "client reads split", moonDate: "2026-09-01", wantForm: "split", wantKeys: split, wantMoonU: true},
		{name: "client before split", moonDate: "2026-08-01", wantForm: "legacy", wantKeys: legacy, wantMoonU: true},
		{name: "no moon on PATH", wantForm: "legacy", wantKeys: legacy},
		{name: "--format split over a user file", moonDate: "2026-08-01", args: []string{"--format", "split"},
			before: mirPtr(`{"registry": "https://mooncakes.io", "index": "https://mooncakes.io/git/index"}`), wantForm: "split", wantKeys: split, wantMoonU: true},
		{name: "--format legacy", moonDate: "2026-09-01", args: []string{"--format", "legacy"}, wantForm: "legacy", wantKeys: legacy, wantMoonU: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			home := t.TempDir()
			path := filepath.Join(home, "config.json")
			if tt.before != nil {
				if err := os.WriteFile(path, []byte(*tt.before), 0o640); err != nil {
					t.Fatal(err)
				}
			}
			pathDir, moonLog := fakeMoon(t, tt.moonDate)
			args := append([]string{"update", "--write-config", "--base-url", base}, tt.args...)
			stdout, stderr, code := runWithMoonHome(t, home, pathDir, args...)
			if code != 0 {
				t.Fatalf("update: exit %d\n%s\n%s", code, stdout, stderr)
			}
			if !strings.Contains(stdout, "in the "+tt.wantForm+" form") {
				t.Errorf("stdout does not name the %s form:\n%s", tt.wantForm, stdout)
			}
			var got map[string]string
			if data, err := os.ReadFile(path); err != nil || json.Unmarshal(data, &got) != nil {
				t.Fatalf("config.json: %v %s", err, data)
			}
			if !maps.Equal(got, tt.wantKeys) {
				t.Errorf("config.json = %v, want %v", got, tt.wantKeys)
			}
			ran, _ := os.ReadFile(moonLog)
			if tt.wantMoonU != (string(ran) == "update MOONCAKES_REGISTRY="+base+"\n") {
				t.Errorf("moon update log %q, want run: %v", ran, tt.wantMoonU)
			}

			c := newMoonClientFromConfig(t, home)
			for _, u := range []string{c.index, c.download, c.api, c.symbols} {
				if !strings.HasPrefix(u, base) {
					t.Errorf("the client sends something to %s, not to the registry", u)
				}
			}
			if err := c.CloneIndex(ctx); err != nil {
				t.Fatal(err)
			}
			v := up.Index.Versions(cliModule)[0]
			if body, err := c.Download(ctx, cliModule, v); err != nil || !bytes.Equal(body, up.Downloads.Archive(cliModule, v)) {
				t.Errorf("download: %v", err)
			}
			if body, err := c.Symbols(ctx); err != nil || !bytes.Equal(body, up.Downloads.Symbols()) {
				t.Errorf("symbols: %v", err)
			}
			if res, _, err := c.Search(ctx, "lex", 10); err != nil || len(res) == 0 {
				t.Errorf("search: %v %v", res, err)
			}

			if stdout, stderr, code := runWithMoonHome(t, home, pathDir, "update", "--reset"); code != 0 {
				t.Fatalf("update --reset: exit %d\n%s\n%s", code, stdout, stderr)
			}
			data, err := os.ReadFile(path)
			switch {
			case tt.before == nil && !errors.Is(err, os.ErrNotExist):
				t.Errorf("after --reset: %q %v, want no file as before", data, err)
			case tt.before != nil && string(data) != *tt.before:
				t.Errorf("after --reset: %q %v, want %q", data, err, *tt.before)
			}
		})
	}

	t.Run("a legacy file without symbols is reported", func(t *testing.T) {
		home := t.TempDir()
		noSymbols := `{"registry": "` + base + `", "index": "` + base + `/git/index"}`
		if err := os.WriteFile(filepath.Join(home, "config.json"), []byte(noSymbols), 0o644); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, code := runWithMoonHome(t, home, t.TempDir(), "update", "--base-url", base)
		if code != 1 || !strings.Contains(stderr, `no "symbols"`) {
			t.Errorf("exit %d, want 1 naming the missing symbols key\n%s\n%s", code, stdout, stderr)
		}
	})
	t.Run("bad --format", func(t *testing.T) {
		stdout, stderr, code := runWithMoonHome(t, t.TempDir(), t.TempDir(), "update", "--write-config", "--format", "yaml", "--base-url", base)
		if code != 2 || !strings.Contains(stderr, `"legacy" or "split"`) {
			t.Errorf("exit %d, want 2 naming the forms\n%s\n%s", code, stdout, stderr)
		}
	})
}

// TestClientDownloadBase: with the split config everything immutable comes
// from the download base: archives, symbols.zip, prebuilt wasm and its
// .wasm.sha256, and paths no route names. All of it is kept and served with
// upstream down; a missing asset asked for again and again costs upstream
// one request.
func TestClientDownloadBase(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{testupstream.EveryVersion(cliModule)}})
	wasm := []byte("\x00asm\x01\x00\x00\x00 prebuilt")
	const asset = "moonbitlang/lex@0.1.1/runtime/lexer.wasm"
	up.Downloads.SetAsset(asset, wasm)
	up.Downloads.SetAsset(asset+".sha256", []byte(strings.Repeat("c", 64)+"  lexer.wasm\n"))
	const future = "/toolchain/2026-11/core-bundle.tar.gz" // a path no route names
	up.Downloads.SetFile(future, []byte("future artifact"))
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL()})

	home := t.TempDir()
	if stdout, stderr, code := runWithMoonHome(t, home, t.TempDir(), "update", "--write-config", "--format", "split", "--base-url", reg.URL); code != 0 {
		t.Fatalf("update: exit %d\n%s\n%s", code, stdout, stderr)
	}
	c := newMoonClientFromConfig(t, home)
	if err := c.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}
	versions := up.Index.Versions(cliModule)
	fetchAll := func(when string) {
		for _, v := range versions {
			if _, err := c.Download(ctx, cliModule, v); err != nil {
				t.Errorf("%s: archive %s: %v", when, v, err)
			}
		}
		for path, want := range map[string][]byte{
			c.symbols:                       up.Downloads.Symbols(),
			c.download + "/assets/" + asset: wasm,
			c.download + "/assets/" + asset + ".sha256": []byte(strings.Repeat("c", 64) + "  lexer.wasm\n"),
			c.download + future:                         []byte("future artifact"),
		} {
			if got, err := c.get(ctx, path); err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: %s: %q %v, want %q", when, path, got, err, want)
			}
		}
	}
	fetchAll("upstream up")

	const missing = "moonbitlang/lex@0.1.1/runtime/none.wasm"
	for range 50 {
		_, err := c.Asset(ctx, missing)
		var se *statusError
		if !errors.As(err, &se) || se.status != http.StatusNotFound {
			t.Fatalf("missing asset: %v, want 404", err)
		}
	}
	if n := up.Count("/assets/" + missing); n != 1 {
		t.Errorf("50 requests for a missing asset cost upstream %d requests, want 1", n)
	}

	if err := up.Down(); err != nil {
		t.Fatal(err)
	}
	fetchAll("upstream down")
}

// TestClientSearchAndMetadata: search and module metadata come from
// upstream while it answers; with upstream down (or the server offline)
// search is answered from the local index in the same JSON shape, in order
// of relevance, and metadata from a kept copy or else from the index.
func TestClientSearchAndMetadata(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	up := startUpstream(t, testupstream.Options{})
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL()})
	c := newMoonClient(t, reg.URL)

	res, hdr, err := c.Search(ctx, "lex", 50)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) == 0 || hdr.Get("X-Registry-Answer") != "" {
		t.Errorf("online search: %d results, answered by %q; want upstream's", len(res), hdr.Get("X-Registry-Answer"))
	}
	if body, err := c.get(ctx, reg.URL+"/api/v0/modules/moonbitlang/x"); err != nil || !strings.Contains(string(body), `"source":"testupstream"`) {
		t.Errorf("online module metadata: %s %v", body, err)
	}
	// moon view passed through to upstream, latest and a version.
	checkView(t, c, reg.URL+"/api/v0/manifest/moonbitlang/x", "moonbitlang/x", "0.4.40", "")
	checkView(t, c, reg.URL+"/api/v0/manifest/moonbitlang/x@0.4.6", "moonbitlang/x", "0.4.6", "")
	if body, err := c.get(ctx, reg.URL+"/api/v0/manifest/moonbitlang/x@0.4.6"); err != nil || !strings.Contains(string(body), `"source":"testupstream"`) {
		t.Errorf("moon view online is not upstream's answer: %s %v", body, err)
	}

	if err := up.Down(); err != nil {
		t.Fatal(err)
	}
	t.Run("upstream down", func(t *testing.T) { checkLocalAnswers(t, reg.URL) })
	reg.Stop(t)
	offline := startRegistry(t, registryOptions{Root: reg.Root, UpstreamURL: up.URL(), Args: []string{"--offline"}})
	t.Run("server offline", func(t *testing.T) { checkLocalAnswers(t, offline.URL) })
}

// checkLocalAnswers checks what a registry whose upstream cannot answer
// says to search and metadata requests.
func checkLocalAnswers(t *testing.T, base string) {
	ctx := t.Context()
	c := newMoonClient(t, base)
	res, hdr, err := c.Search(ctx, "regexp", 3)
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Get("X-Registry-Answer") != "local-index" {
		t.Errorf("search answered by %q, want the local index", hdr.Get("X-Registry-Answer"))
	}
	var names []string
	for _, r := range res {
		names = append(names, r.Name)
	}
	if want := []string{"ZijianFeng33/regexp", "moonbitlang/regexp", "yj-qin/regexp"}; !slices.Equal(names, want) {
		t.Errorf("search regexp: %q, want %q", names, want)
	}
	raw, err := c.get(ctx, base+"/api/v0/search?kw=moonbitlang%2Fx&limit=1")
	if err != nil {
		t.Fatal(err)
	}
	var shape []map[string]any
	if err := json.Unmarshal(raw, &shape); err != nil || len(shape) != 1 {
		t.Fatalf("search answer %s: %v, want a bare array of one object", raw, err)
	}
	for k := range shape[0] {
		if !slices.Contains([]string{"name", "version", "description", "keywords"}, k) {
			t.Errorf("search object has field %q: %s", k, raw)
		}
	}
	if shape[0]["name"] != "moonbitlang/x" || shape[0]["version"] != "0.4.40" {
		t.Errorf("search moonbitlang/x: %s", raw)
	}

	// Fetched while upstream answered: its kept copy.
	if body, err := c.get(ctx, base+"/api/v0/modules/moonbitlang/x"); err != nil || !strings.Contains(string(body), `"source":"testupstream"`) {
		t.Errorf("kept module metadata: %s %v", body, err)
	}
	// Never fetched: what the index knows.
	body, err := c.get(ctx, base+"/api/v0/modules/mizchi/git")
	var mod struct {
		Name, LatestVersion, Deprecated string
		Versions                        []struct{ Version string }
	}
	if err != nil || json.Unmarshal(body, &mod) != nil {
		t.Fatalf("module metadata from the index: %s %v", body, err)
	}
	if !strings.Contains(string(body), `"latest_version":"0.2.0"`) || !strings.Contains(string(body), `"deprecated":"This package has been renamed`) || len(mod.Versions) != 3 {
		t.Errorf("module metadata from the index: %s", body)
	}
	if body, err := c.get(ctx, base+"/api/v0/manifest/mizchi/git@0.2.0"); err != nil || !strings.Contains(string(body), `"module":"mizchi/git"`) {
		t.Errorf("manifest from the index: %s %v", body, err)
	}
	// moon view mizchi/git: the latest release, deprecated as moon reads it.
	checkView(t, c, base+"/api/v0/manifest/mizchi/git", "mizchi/git", "0.2.0", "This package has been renamed to mizchi/bit. Please use mizchi/bit instead.")
	// moon view mizchi: the owner's modules.
	body, err = c.get(ctx, base+"/api/v0/user/mizchi")
	var user struct {
		Username string
		Modules  []struct{ Name, Version string }
	}
	if err != nil || json.Unmarshal(body, &user) != nil || user.Username != "mizchi" || !slices.ContainsFunc(user.Modules, func(m struct{ Name, Version string }) bool {
		return m.Name == "mizchi/git" && m.Version == "0.2.0"
	}) {
		t.Errorf("user from the index: %s %v", body, err)
	}
	_, err = c.get(ctx, base+"/api/v0/modules/nobody/nothing")
	var se *statusError
	if !errors.As(err, &se) || se.status != http.StatusNotFound {
		t.Errorf("unknown module with a current index: %v, want 404", err)
	}
}

// checkView asks url for a module's release as moon view does and checks
// the fields moon requires (mooncake registry/client.rs,
// RegistryModuleManifest): module, version, a boolean yanked with the
// deprecation as its reason (wantReason, "" for none), latest_version,
// metadata and versions.
func checkView(t *testing.T, c *moonClient, url, wantModule, wantVersion, wantReason string) {
	t.Helper()
	body, err := c.get(t.Context(), url)
	if err != nil {
		t.Errorf("moon view %s: %v", url, err)
		return
	}
	var v struct {
		Module        string                     `json:"module"`
		Version       string                     `json:"version"`
		Yanked        *bool                      `json:"yanked"`
		YankedReason  *string                    `json:"yanked_reason"`
		LatestVersion string                     `json:"latest_version"`
		Metadata      map[string]any             `json:"metadata"`
		Versions      []struct{ Version string } `json:"versions"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Errorf("moon view %s: %v\n%s", url, err, body)
		return
	}
	reason := ""
	if v.YankedReason != nil {
		reason = *v.YankedReason
	}
	if v.Module != wantModule || v.Version != wantVersion || v.Yanked == nil || *v.Yanked != (wantReason != "") || reason != wantReason ||
		v.LatestVersion == "" || v.Metadata == nil || len(v.Versions) == 0 {
		t.Errorf("moon view %s: %s", url, body)
	}
}

// TestClientRetryStatuses: the client retries 408, 429, 500, 502, 503 and
// 504 up to three times and never a 404 (moon PR 2244). Upstream trouble
// therefore answers in that set, so a client rides out a short outage; 404
// is kept for what does not exist.
func TestClientRetryStatuses(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{testupstream.EveryVersion(cliModule)}})
	// No retries of our own: each client attempt is one upstream request.
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL(), Env: []string{"MOONBIT_REGISTRY_UPSTREAM_RETRIES=0"}})
	c := newMoonClient(t, reg.URL)
	if err := c.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}
	versions := up.Index.Versions(cliModule)
	path := func(v string) string { return "/user/" + cliModule + "/" + v + ".zip" }

	// Two failures, then upstream recovers: the client's retries get it.
	up.Faults.FailWith(http.StatusServiceUnavailable, testupstream.OnPrefix(path(versions[0])), testupstream.Times(2))
	if body, err := c.Download(ctx, cliModule, versions[0]); err != nil || !bytes.Equal(body, up.Downloads.Archive(cliModule, versions[0])) {
		t.Errorf("download through a short outage: %v", err)
	}
	if n := up.Count(path(versions[0])); n != 3 {
		t.Errorf("upstream saw %d requests, want 3 (two failures, then the archive)", n)
	}

	for _, tt := range []struct {
		name     string
		setup    func()
		version  string
		want     int
		attempts int // client requests, retries included
	}{
		{"upstream keeps failing", func() { up.Faults.FailWith(http.StatusInternalServerError, testupstream.OnPrefix(path(versions[1]))) }, versions[1], http.StatusBadGateway, 4},
		{"version not in a current index", func() {}, "99.0.0", http.StatusNotFound, 1},
		{"upstream says 404", func() { up.Faults.FailWith(http.StatusNotFound, testupstream.OnPrefix(path(versions[1]))) }, versions[1], http.StatusNotFound, 1},
		{"upstream down", func() {
			if err := up.Down(); err != nil {
				t.Fatal(err)
			}
		}, versions[1], http.StatusGatewayTimeout, 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up.Faults.Clear()
			tt.setup()
			before := cliAttempts(reg, tt.version)
			_, err := c.get(ctx, c.archiveURL(cliModule, tt.version))
			var se *statusError
			if !errors.As(err, &se) || se.status != tt.want {
				t.Fatalf("download: %v, want status %d", err, tt.want)
			}
			if n := cliWaitAttempts(reg, tt.version, before+tt.attempts) - before; n != tt.attempts {
				t.Errorf("the client sent %d requests, want %d", n, tt.attempts)
			}
		})
	}
}

// cliWaitAttempts waits (a bounded time) until the access log, read from
// a pipe, has n lines for the archive, and returns the count then.
func cliWaitAttempts(reg *registry, version string, n int) int {
	deadline := time.Now().Add(5 * time.Second)
	for cliAttempts(reg, version) < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // room for a line too many to show
	return cliAttempts(reg, version)
}

// cliAttempts counts the access log lines for an archive of cliModule in
// the client's one-segment form.
func cliAttempts(reg *registry, version string) int {
	return strings.Count(reg.Logs(), `"path":"/user/`+url.QueryEscape(cliModule+"/"+version)+`.zip"`)
}
