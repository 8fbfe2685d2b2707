package testupstream_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"moonbit-registry/internal/testupstream"
)

const (
	camel     = "illusory0x0/🐫"
	chinese   = "CAIMEOX/原来可以发中文包"
	nested    = "moonbitlang/lex/runtime"
	plusMod   = "bzy-debug/hello"
	plusVer   = "0.1.20240510+81e045f4e"
	xModule   = "moonbitlang/x"
	xVersion  = "0.4.6"
	indexSize = 887
)

// testArchives covers a plain module, nested and non-ASCII names and a
// version with "+".
func testArchives() []testupstream.ModuleVersion {
	return []testupstream.ModuleVersion{
		testupstream.EveryVersion(xModule),
		testupstream.EveryVersion(nested),
		testupstream.EveryVersion(camel),
		{Module: chinese, Version: "0.1.0"},
		{Module: plusMod, Version: plusVer},
	}
}

// git runs git with the upstream's isolated environment and fails the test
// on error.
func git(t *testing.T, u *testupstream.Upstream, args ...string) string {
	t.Helper()
	out, err := gitErr(t, u, args...)
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func gitErr(t *testing.T, u *testupstream.Upstream, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = u.Index.GitEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func clone(t *testing.T, u *testupstream.Upstream) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "index")
	git(t, u, "clone", "--depth", "1", "--single-branch", "--no-tags", u.IndexURL(), dir)
	return dir
}

func client() *http.Client {
	return &http.Client{Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, rawURL string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", rawURL, err)
	}
	return resp, body
}

// archiveURL is the documented plain-slash form.
func archiveURL(u *testupstream.Upstream, module, version string) string {
	return u.DownloadURL() + "/user/" + module + "/" + version + ".zip"
}

// encodedArchiveURL is the form current clients send: one form-encoded
// path segment.
func encodedArchiveURL(u *testupstream.Upstream, module, version string) string {
	return u.DownloadURL() + "/user/" + url.QueryEscape(module+"/"+version) + ".zip"
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// indexLines maps version to the raw lines for it in an .index file.
func indexLines(t *testing.T, b []byte) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var l struct{ Version string }
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("bad index line %q: %v", line, err)
		}
		out[l.Version] = append(out[l.Version], line)
	}
	return out
}

func lineField(t *testing.T, line, field string) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatal(err)
	}
	return m[field]
}

func TestCloneAndArchives(t *testing.T) {
	t.Parallel()
	u := testupstream.Start(t, testupstream.Options{Archives: testArchives()})
	dir := clone(t, u)
	src, err := testupstream.DefaultIndexSource()
	if err != nil {
		t.Fatal(err)
	}

	t.Run("clone matches source", func(t *testing.T) {
		if got := git(t, u, "-C", dir, "rev-parse", "--abbrev-ref", "HEAD"); strings.TrimSpace(got) != "main" {
			t.Errorf("cloned branch = %q, want main", got)
		}
		var files []string
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == ".git" {
				return filepath.SkipDir
			}
			if !d.IsDir() {
				rel, _ := filepath.Rel(dir, p)
				files = append(files, filepath.ToSlash(rel))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(files) != indexSize {
			t.Errorf("clone has %d files, want %d", len(files), indexSize)
		}
		have := map[string]bool{}
		for _, f := range files {
			have[f] = true
		}
		for _, m := range []string{camel, chinese, nested} {
			if !have["user/"+m+".index"] {
				t.Errorf("clone lacks user/%s.index", m)
			}
		}
		rewritten := 0
		for _, rel := range files {
			if !strings.HasSuffix(rel, ".index") {
				t.Errorf("unexpected file %s", rel)
				continue
			}
			got, err := os.ReadFile(filepath.Join(dir, rel))
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join(src, rel))
			if err != nil {
				t.Fatalf("%s not in source: %v", rel, err)
			}
			module := strings.TrimSuffix(strings.TrimPrefix(rel, "user/"), ".index")
			gotLines := strings.SplitAfter(string(got), "\n")
			wantLines := strings.SplitAfter(string(want), "\n")
			if len(gotLines) != len(wantLines) {
				t.Errorf("%s: %d lines, want %d", rel, len(gotLines), len(wantLines))
				continue
			}
			for i, wl := range wantLines {
				gl := gotLines[i]
				if strings.TrimSpace(wl) == "" {
					if gl != wl {
						t.Errorf("%s:%d changed", rel, i+1)
					}
					continue
				}
				var l struct{ Version, Checksum string }
				if err := json.Unmarshal([]byte(wl), &l); err != nil {
					t.Fatal(err)
				}
				if sum := u.Downloads.Checksum(module, l.Version); sum != "" {
					// Only the checksum's hex digits may differ.
					wl = strings.Replace(wl, `"checksum": "`+l.Checksum+`"`, `"checksum": "`+sum+`"`, 1)
					rewritten++
				}
				if gl != wl {
					t.Errorf("%s:%d differs from source:\n got %s\nwant %s", rel, i+1, gl, wl)
				}
			}
		}
		if want := len(u.Downloads.Archives()); rewritten != want {
			t.Errorf("rewrote %d lines, want one per archive (%d)", rewritten, want)
		}
	})

	tests := []struct{ module, version string }{
		{xModule, xVersion},
		{xModule, "0.1.0"},
		{nested, "0.1.1"},
		{camel, "0.1.0"},
		{chinese, "0.1.0"},
		{plusMod, plusVer},
	}
	for _, tc := range tests {
		t.Run("archive "+tc.module+"@"+tc.version, func(t *testing.T) {
			idx, err := os.ReadFile(filepath.Join(dir, "user", tc.module+".index"))
			if err != nil {
				t.Fatal(err)
			}
			lines := indexLines(t, idx)[tc.version]
			if len(lines) == 0 {
				t.Fatalf("no index line for %s", tc.version)
			}
			line := lines[len(lines)-1]
			var indexSum string
			if err := json.Unmarshal(lineField(t, line, "checksum"), &indexSum); err != nil {
				t.Fatal(err)
			}
			want := u.Downloads.Archive(tc.module, tc.version)
			if want == nil || sha(want) != indexSum || u.Downloads.Checksum(tc.module, tc.version) != indexSum {
				t.Fatalf("checksum: index %s, Checksum %s, sha(ArchiveBytes) %s", indexSum, u.Downloads.Checksum(tc.module, tc.version), sha(want))
			}
			for _, link := range []string{archiveURL(u, tc.module, tc.version), encodedArchiveURL(u, tc.module, tc.version)} {
				resp, body := get(t, client(), link)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("GET %s: %s", link, resp.Status)
				}
				if sha(body) != indexSum {
					t.Errorf("GET %s: sha256 %s, index says %s", link, sha(body), indexSum)
				}
				if resp.ContentLength != int64(len(want)) {
					t.Errorf("GET %s: Content-Length %d, want %d", link, resp.ContentLength, len(want))
				}
			}

			// Deterministic: building again gives the same bytes.
			deps := lineField(t, line, "deps")
			again, err := testupstream.BuildArchive(tc.module, tc.version, deps, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, want) {
				t.Error("rebuilt archive differs")
			}

			mod := readModJSON(t, want)
			if mod.Name != tc.module || mod.Version != tc.version {
				t.Errorf("moon.mod.json name/version = %s/%s", mod.Name, mod.Version)
			}
			assertSameDeps(t, mod.Deps, deps)
		})
	}

	t.Run("HEAD and unknown archives", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodHead, archiveURL(u, xModule, xVersion), nil)
		resp, err := client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(u.Downloads.Archive(xModule, xVersion))) {
			t.Errorf("HEAD: %s, length %d", resp.Status, resp.ContentLength)
		}
		for _, link := range []string{
			archiveURL(u, xModule, "9.9.9"),
			archiveURL(u, "moonbitlang/core", "0.1.0"), // in the index, no archive chosen
			u.URL() + "/user/nothing.zip",
			u.URL() + "/nowhere",
		} {
			if resp, _ := get(t, client(), link); resp.StatusCode != http.StatusNotFound {
				t.Errorf("GET %s: %s, want 404", link, resp.Status)
			}
		}
	})
}

type modJSON struct {
	Name    string                     `json:"name"`
	Version string                     `json:"version"`
	Deps    map[string]json.RawMessage `json:"deps"`
}

func readModJSON(t *testing.T, zipBytes []byte) modJSON {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(zipBytes), int64(len(zipBytes)))
	if err != nil {
		t.Fatalf("open zip: %v", err)
	}
	f, err := zr.Open("moon.mod.json")
	if err != nil {
		t.Fatalf("zip lacks moon.mod.json: %v", err)
	}
	defer f.Close()
	var m modJSON
	if err := json.NewDecoder(f).Decode(&m); err != nil {
		t.Fatalf("moon.mod.json: %v", err)
	}
	return m
}

// assertSameDeps compares deps from moon.mod.json with an index line's raw
// deps as JSON values.
func assertSameDeps(t *testing.T, got map[string]json.RawMessage, want json.RawMessage) {
	t.Helper()
	var g, w map[string]any
	if len(got) > 0 {
		b, _ := json.Marshal(got)
		if err := json.Unmarshal(b, &g); err != nil {
			t.Fatal(err)
		}
	}
	if len(want) > 0 && string(want) != "null" {
		if err := json.Unmarshal(want, &w); err != nil {
			t.Fatal(err)
		}
	}
	if len(g) == 0 && len(w) == 0 {
		return
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("deps = %v, want %v", g, w)
	}
}

func TestBuildArchive(t *testing.T) {
	t.Parallel()
	deps := json.RawMessage(`{"moonbitlang/x": "0.4.6", "a/b": {"path": "../b", "version": "0.1.0"}}`)
	tests := []struct {
		name     string
		size     int
		wantSize int // 0: unpadded
	}{
		{"unpadded", 0, 0},
		{"smaller than unpadded", 10, 0},
		{"100 KiB", 100 << 10, 100 << 10},
		{"1 MiB plus 3", 1<<20 + 3, 1<<20 + 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := testupstream.BuildArchive("o/m", "1.2.3", deps, tc.size)
			if err != nil {
				t.Fatal(err)
			}
			b, err := testupstream.BuildArchive("o/m", "1.2.3", deps, tc.size)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a, b) {
				t.Error("two builds differ")
			}
			if tc.wantSize != 0 && len(a) != tc.wantSize {
				t.Errorf("size %d, want %d", len(a), tc.wantSize)
			}
			if tc.wantSize == 0 && len(a) > 2048 {
				t.Errorf("unpadded size %d", len(a))
			}
			mod := readModJSON(t, a)
			if mod.Name != "o/m" || mod.Version != "1.2.3" {
				t.Errorf("moon.mod.json = %+v", mod)
			}
			assertSameDeps(t, mod.Deps, deps)
		})
	}
	other, err := testupstream.BuildArchive("o/m", "1.2.4", deps, 0)
	if err != nil {
		t.Fatal(err)
	}
	same, _ := testupstream.BuildArchive("o/m", "1.2.3", deps, 0)
	if bytes.Equal(other, same) {
		t.Error("different versions give the same archive")
	}
}

func TestAddVersionAndRewriteHistory(t *testing.T) {
	t.Parallel()
	u := testupstream.Start(t, testupstream.Options{Archives: []testupstream.ModuleVersion{{Module: xModule, Version: xVersion}}})
	dir := clone(t, u)
	before := strings.TrimSpace(git(t, u, "-C", dir, "rev-parse", "HEAD"))

	tests := []struct {
		module, version string
		deps            map[string]string
	}{
		{xModule, "9.0.0", map[string]string{"moonbitlang/core": "0.1.0"}},
		{"newowner/fresh/nested", "0.0.1", nil},
		{camel, "1.0.0+build.1", map[string]string{xModule: "9.0.0"}},
	}
	for _, tc := range tests {
		if err := u.Index.AddVersion(t.Context(), tc.module, tc.version, tc.deps); err != nil {
			t.Fatalf("AddVersion %s@%s: %v", tc.module, tc.version, err)
		}
	}
	if err := u.Index.AddVersion(t.Context(), xModule, xVersion, nil); err == nil {
		t.Error("AddVersion of a published version succeeded")
	}
	out := git(t, u, "-C", dir, "pull", "origin", "main")
	if !strings.Contains(out, "Fast-forward") {
		t.Errorf("pull did not fast-forward:\n%s", out)
	}
	if got := git(t, u, "-C", dir, "merge-base", "--is-ancestor", before, "HEAD"); got != "" {
		t.Errorf("merge-base: %s", got)
	}
	for _, tc := range tests {
		idx, err := os.ReadFile(filepath.Join(dir, "user", tc.module+".index"))
		if err != nil {
			t.Fatalf("pulled index lacks %s: %v", tc.module, err)
		}
		lines := indexLines(t, idx)[tc.version]
		if len(lines) != 1 {
			t.Fatalf("%s: %d lines for %s", tc.module, len(lines), tc.version)
		}
		var sum string
		_ = json.Unmarshal(lineField(t, lines[0], "checksum"), &sum)
		resp, body := get(t, client(), encodedArchiveURL(u, tc.module, tc.version))
		if resp.StatusCode != http.StatusOK || sha(body) != sum || sum != u.Downloads.Checksum(tc.module, tc.version) {
			t.Errorf("%s@%s: %s, sha %s, index %s", tc.module, tc.version, resp.Status, sha(body), sum)
		}
		mod := readModJSON(t, body)
		var wantDeps json.RawMessage
		if tc.deps != nil {
			wantDeps, _ = json.Marshal(tc.deps)
		}
		assertSameDeps(t, mod.Deps, wantDeps)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "user", camel+".index")); !bytes.Equal(got, u.Index.File(camel)) {
		t.Error("IndexFile differs from the pulled file")
	}
	// Existing lines are untouched by the append.
	src, _ := testupstream.DefaultIndexSource()
	orig, _ := os.ReadFile(filepath.Join(src, "user", camel+".index"))
	now, _ := os.ReadFile(filepath.Join(dir, "user", camel+".index"))
	if !bytes.HasPrefix(now, orig) {
		t.Error("AddVersion changed earlier lines")
	}

	// A raw line (here a yanked marker) shows up on the next pull.
	raw := `{"name": "moonbitlang/x", "version": "9.0.0", "yanked": true}`
	if err := u.Index.AddVersionRaw(t.Context(), xModule, []byte(raw)); err != nil {
		t.Fatal(err)
	}
	git(t, u, "-C", dir, "pull", "origin", "main")
	idx, _ := os.ReadFile(filepath.Join(dir, "user", xModule+".index"))
	if !strings.HasSuffix(string(idx), raw+"\n") {
		t.Error("raw line not at the end of the pulled index")
	}

	// After a history rewrite a pull cannot fast-forward; a new clone works.
	head, err := u.Index.Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Index.RewriteHistory(t.Context()); err != nil {
		t.Fatal(err)
	}
	newHead, _ := u.Index.Head(t.Context())
	if newHead == head {
		t.Fatal("RewriteHistory kept the head commit")
	}
	if parents := git(t, u, "-C", u.Index.Dir(), "rev-list", "--parents", "-n", "1", newHead); strings.TrimSpace(parents) != newHead {
		t.Errorf("new head has parents: %s", parents)
	}
	if out, err := gitErr(t, u, "-C", dir, "pull", "--ff-only", "origin", "main"); err == nil {
		t.Errorf("pull after rewrite succeeded:\n%s", out)
	}
	dir2 := clone(t, u)
	if got := strings.TrimSpace(git(t, u, "-C", dir2, "rev-parse", "HEAD")); got != newHead {
		t.Errorf("fresh clone at %s, want %s", got, newHead)
	}
}

func TestDeterministicCommits(t *testing.T) {
	t.Parallel()
	opts := testupstream.Options{Archives: []testupstream.ModuleVersion{{Module: xModule, Version: xVersion}}}
	a := testupstream.Start(t, opts)
	b := testupstream.Start(t, opts)
	ha, err := a.Index.Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	hb, _ := b.Index.Head(t.Context())
	if ha != hb {
		t.Errorf("two upstreams with the same options: heads %s and %s", ha, hb)
	}
}

func TestSymbolsAssetsAPI(t *testing.T) {
	t.Parallel()
	u := testupstream.Start(t, testupstream.Options{RequireUserAgent: true})
	c := client()

	resp, body := get(t, c, u.URL()+"/symbols.zip")
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != http.StatusOK || etag == "" || etag != u.Downloads.SymbolsETag() || !bytes.Equal(body, u.Downloads.Symbols()) {
		t.Fatalf("symbols: %s, ETag %q", resp.Status, etag)
	}
	if cc := resp.Header.Get("Cache-Control"); cc == "" {
		t.Error("symbols: no Cache-Control")
	}
	if _, err := zip.NewReader(bytes.NewReader(body), int64(len(body))); err != nil {
		t.Errorf("symbols is not a zip: %v", err)
	}
	if resp, body := get(t, c, u.URL()+"/symbols.zip", "If-None-Match", etag); resp.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Errorf("If-None-Match: %s, %d bytes", resp.Status, len(body))
	}
	u.Downloads.SetSymbols([]byte("new symbols"))
	if resp, body := get(t, c, u.URL()+"/symbols.zip", "If-None-Match", etag); resp.StatusCode != http.StatusOK || string(body) != "new symbols" || resp.Header.Get("ETag") == etag {
		t.Errorf("after SetSymbols: %s, %q", resp.Status, body)
	}

	asset := "/assets/moonbitlang/x@0.4.6/x.wasm"
	if resp, _ := get(t, c, u.URL()+asset); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unset asset: %s", resp.Status)
	}
	u.Downloads.SetAsset(asset, []byte("\x00asm"))
	if resp, body := get(t, c, u.URL()+asset); resp.StatusCode != http.StatusOK || string(body) != "\x00asm" {
		t.Errorf("asset: %s %q", resp.Status, body)
	}
	u.Downloads.SetAsset("moonbitlang/x@0.4.6/x.wasm", nil)
	if resp, _ := get(t, c, u.URL()+asset); resp.StatusCode != http.StatusNotFound {
		t.Errorf("removed asset: %s", resp.Status)
	}

	resp, body = get(t, c, u.URL()+"/api/v0/search?kw=lex&limit=50")
	var res []struct{ Name, Version string } // a bare array, as moon reads it
	if err := json.Unmarshal(body, &res); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("search: %s %v", resp.Status, err)
	}
	found := false
	for _, it := range res {
		found = found || it.Name == nested
	}
	if !found {
		t.Errorf("search kw=lex lacks %s: %+v", nested, res)
	}
	for path, want := range map[string]int{
		"/api/v0/modules/" + nested:                 http.StatusOK,
		"/api/v0/modules/nobody/none":               http.StatusNotFound,
		"/api/v0/manifest/moonbitlang/x@0.4.6":      http.StatusOK,
		"/api/v0/manifest/moonbitlang/x@9.9.9":      http.StatusNotFound,
		"/api/v0/manifest/moonbitlang/x-no-version": http.StatusNotFound,
		"/api/v0/manifest/moonbitlang/x":            http.StatusOK,
		"/api/v0/user/moonbitlang":                  http.StatusOK,
		"/api/v0/user/nobody":                       http.StatusNotFound,
	} {
		if resp, body := get(t, c, u.URL()+path); resp.StatusCode != want || (want == http.StatusOK && !json.Valid(body)) {
			t.Errorf("%s: %s %q, want %d", path, resp.Status, body, want)
		}
	}
	if resp, _ := get(t, c, u.URL()+"/api/v0/search?kw=lex&limit=50", "If-None-Match", resp.Header.Get("ETag")); resp.StatusCode != http.StatusNotModified {
		t.Errorf("search If-None-Match: %s", resp.Status)
	}
	if resp, _ := get(t, c, u.URL()+"/api/v0/unknown"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown API: %s", resp.Status)
	}

	// Without a User-Agent the "firewall" refuses; an empty header value
	// makes net/http send none.
	if resp, _ := get(t, c, u.URL()+"/symbols.zip", "User-Agent", ""); resp.StatusCode != http.StatusForbidden {
		t.Errorf("no User-Agent: %s", resp.Status)
	}
}

func TestCounts(t *testing.T) {
	t.Parallel()
	u := testupstream.Start(t, testupstream.Options{Archives: []testupstream.ModuleVersion{{Module: camel, Version: "0.1.0"}}})
	c := client()
	u.ResetCounts()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get(archiveURL(u, camel, "0.1.0"))
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	get(t, c, encodedArchiveURL(u, camel, "0.1.0"))
	get(t, c, u.URL()+"/symbols.zip")
	get(t, c, u.URL()+"/missing")
	get(t, c, u.ArchiveURL(camel, "0.1.0"))
	path := "/user/" + camel + "/0.1.0.zip"
	if n := u.Count(path); n != 6 {
		t.Errorf("Count(%s) = %d, want 6 (every URL form counts under the decoded path)", path, n)
	}
	want := map[string]int{path: 6, "/symbols.zip": 1, "/missing": 1}
	if got := u.Counts(); !reflect.DeepEqual(got, want) {
		t.Errorf("Counts = %v, want %v", got, want)
	}
	clone(t, u)
	if n := u.Count("/git/index/info/refs"); n < 1 {
		t.Errorf("clone made %d info/refs requests", n)
	}
	u.ResetCounts()
	if got := u.Counts(); len(got) != 0 {
		t.Errorf("after ResetCounts: %v", got)
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	const size = 256 << 10
	u := testupstream.Start(t, testupstream.Options{
		Archives:    []testupstream.ModuleVersion{{Module: xModule, Version: xVersion}},
		ArchiveSize: size,
	})
	arch := archiveURL(u, xModule, xVersion)
	want := u.Downloads.Archive(xModule, xVersion)
	if len(want) != size {
		t.Fatalf("archive size %d, want %d", len(want), size)
	}
	symbols := u.URL() + "/symbols.zip"

	// status returns the status of a GET, or 0 and the error.
	status := func(t *testing.T, c *http.Client, link string) (int, []byte, error) {
		t.Helper()
		resp, err := c.Get(link)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, body, err
	}
	ok := func(t *testing.T, link string) {
		t.Helper()
		code, _, err := status(t, client(), link)
		if err != nil || code != http.StatusOK {
			t.Errorf("GET %s: %d %v, want 200", link, code, err)
		}
	}

	tests := []struct {
		name  string
		set   func()
		check func(t *testing.T)
	}{
		{
			name: "FailWith for the next 2 archive requests",
			set: func() {
				u.Faults.FailWith(http.StatusServiceUnavailable, testupstream.OnPrefix(testupstream.PrefixArchives), testupstream.Times(2))
			},
			check: func(t *testing.T) {
				ok(t, symbols) // other routes unaffected
				for i := range 2 {
					if code, _, err := status(t, client(), arch); code != http.StatusServiceUnavailable {
						t.Errorf("request %d: %d %v, want 503", i+1, code, err)
					}
				}
				ok(t, arch) // recovered
			},
		},
		{
			name: "FailWith everywhere until cleared",
			set:  func() { u.Faults.FailWith(http.StatusInternalServerError) },
			check: func(t *testing.T) {
				for _, link := range []string{arch, symbols, arch} {
					if code, _, _ := status(t, client(), link); code != http.StatusInternalServerError {
						t.Errorf("GET %s: %d, want 500", link, code)
					}
				}
				if out, err := gitErr(t, u, "clone", "--depth", "1", u.IndexURL(), filepath.Join(t.TempDir(), "c")); err == nil {
					t.Errorf("clone through a failing upstream succeeded:\n%s", out)
				}
			},
		},
		{
			name: "FailWith 404 on symbols",
			set:  func() { u.Faults.FailWith(http.StatusNotFound, testupstream.OnPrefix(testupstream.PrefixSymbols)) },
			check: func(t *testing.T) {
				if code, _, _ := status(t, client(), symbols); code != http.StatusNotFound {
					t.Errorf("symbols: %d, want 404", code)
				}
				ok(t, arch)
			},
		},
		{
			name: "Hang",
			set:  func() { u.Faults.Hang(testupstream.OnPrefix(testupstream.PrefixArchives)) },
			check: func(t *testing.T) {
				c := &http.Client{Timeout: 300 * time.Millisecond}
				start := time.Now()
				_, _, err := status(t, c, arch)
				var ne interface{ Timeout() bool }
				if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
					t.Errorf("hung request: err %v, want a timeout", err)
				}
				if d := time.Since(start); d > 5*time.Second {
					t.Errorf("hung request took %v", d)
				}
				ok(t, symbols)
			},
		},
		{
			name: "Delay",
			set:  func() { u.Faults.Delay(200*time.Millisecond, testupstream.Times(1)) },
			check: func(t *testing.T) {
				start := time.Now()
				ok(t, arch)
				if d := time.Since(start); d < 200*time.Millisecond {
					t.Errorf("delayed request took %v", d)
				}
			},
		},
		{
			name: "ResetMidBody once",
			set: func() {
				u.Faults.ResetMidBody(testupstream.OnPrefix(testupstream.PrefixArchives), testupstream.Times(1))
			},
			check: func(t *testing.T) {
				code, body, err := status(t, client(), arch)
				if code != http.StatusOK {
					t.Fatalf("status %d %v, want 200 before the reset", code, err)
				}
				if err == nil || len(body) >= size {
					t.Errorf("read %d bytes, err %v; want a cut body and an error", len(body), err)
				}
				if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Logf("reset surfaced as %v", err)
				}
				ok(t, arch)
			},
		},
		{
			name: "Truncate",
			set:  func() { u.Faults.Truncate(testupstream.OnPrefix(testupstream.PrefixArchives)) },
			check: func(t *testing.T) {
				resp, err := client().Get(arch)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if resp.ContentLength != size {
					t.Errorf("Content-Length %d, want %d", resp.ContentLength, size)
				}
				body, err := io.ReadAll(resp.Body)
				if !errors.Is(err, io.ErrUnexpectedEOF) || len(body) != size/2 {
					t.Errorf("read %d bytes, err %v; want %d and unexpected EOF", len(body), err, size/2)
				}
			},
		},
		{
			name: "WrongBytes",
			set:  func() { u.Faults.WrongBytes(testupstream.OnPrefix(testupstream.PrefixArchives)) },
			check: func(t *testing.T) {
				code, body, err := status(t, client(), arch)
				if err != nil || code != http.StatusOK || len(body) != size {
					t.Fatalf("%d, %d bytes, %v", code, len(body), err)
				}
				if sha(body) == sha(want) {
					t.Error("body has the right checksum")
				}
			},
		},
		{
			name: "newest fault wins",
			set: func() {
				u.Faults.FailWith(http.StatusInternalServerError)
				u.Faults.FailWith(http.StatusBadGateway, testupstream.OnPrefix(testupstream.PrefixArchives), testupstream.Times(1))
			},
			check: func(t *testing.T) {
				for _, want := range []int{http.StatusBadGateway, http.StatusInternalServerError} {
					if code, _, _ := status(t, client(), arch); code != want {
						t.Errorf("got %d, want %d", code, want)
					}
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u.Faults.Clear()
			tc.set()
			tc.check(t)
			u.Faults.Clear()
			ok(t, arch)
		})
	}
}

func TestDownUp(t *testing.T) {
	t.Parallel()
	u := testupstream.Start(t, testupstream.Options{Archives: []testupstream.ModuleVersion{{Module: xModule, Version: xVersion}}})
	c := client() // keeps a connection alive across Down
	link := archiveURL(u, xModule, xVersion)
	if resp, _ := get(t, c, link); resp.StatusCode != http.StatusOK {
		t.Fatal(resp.Status)
	}
	// A request hung on the upstream ends when it goes down.
	u.Faults.Hang(testupstream.OnPrefix(testupstream.PrefixSymbols))
	hung := make(chan error, 1)
	go func() {
		resp, err := client().Get(u.URL() + "/symbols.zip")
		if err == nil {
			resp.Body.Close()
		}
		hung <- err
	}()
	time.Sleep(100 * time.Millisecond)

	if err := u.Down(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-hung:
		if err == nil {
			t.Error("hung request got a response after Down")
		}
	case <-time.After(5 * time.Second):
		t.Error("hung request still running after Down")
	}
	for _, cl := range []*http.Client{c, client()} {
		_, err := cl.Get(link)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("GET while down: %v, want connection refused", err)
		}
	}
	if err := u.Down(); err != nil {
		t.Errorf("second Down: %v", err)
	}
	if err := u.Up(); err != nil {
		t.Fatal(err)
	}
	u.Faults.Clear()
	if resp, body := get(t, c, link); resp.StatusCode != http.StatusOK || sha(body) != u.Downloads.Checksum(xModule, xVersion) {
		t.Errorf("after Up: %s", resp.Status)
	}
	clone(t, u)
}

func TestCloseEndsHungRequests(t *testing.T) {
	t.Parallel()
	u, err := testupstream.New(t.Context(), testupstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	work := filepath.Dir(filepath.Dir(u.Index.Dir()))
	u.Faults.Hang()
	done := make(chan error, 1)
	go func() {
		resp, err := client().Get(u.URL() + "/symbols.zip")
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	closed := make(chan error, 1)
	go func() { closed <- u.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked on a hung request")
	}
	if err := <-done; err == nil {
		t.Error("hung request succeeded")
	}
	if _, err := os.Stat(work); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("temporary work dir %s left behind: %v", work, err)
	}
	if err := u.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := u.Up(); err == nil {
		t.Error("Up after Close succeeded")
	}
}

func TestOptionErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts testupstream.Options
	}{
		{"non-loopback listen", testupstream.Options{Listen: "0.0.0.0:0"}},
		{"unknown module", testupstream.Options{Archives: []testupstream.ModuleVersion{testupstream.EveryVersion("no/such")}}},
		{"unknown version", testupstream.Options{Archives: []testupstream.ModuleVersion{{Module: xModule, Version: "0.0.0-nope"}}}},
		{"missing source", testupstream.Options{IndexSource: filepath.Join(t.TempDir(), "none")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := testupstream.New(t.Context(), tc.opts)
			if err == nil {
				u.Close()
				t.Fatal("New succeeded")
			}
		})
	}
}

func TestParseModuleVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    testupstream.ModuleVersion
		wantErr bool
	}{
		{"moonbitlang/x", testupstream.EveryVersion("moonbitlang/x"), false},
		{"moonbitlang/core@0.1.0", testupstream.ModuleVersion{Module: "moonbitlang/core", Version: "0.1.0"}, false},
		{" moonbitlang/lex/runtime@0.1.1+x ", testupstream.ModuleVersion{Module: nested, Version: "0.1.1+x"}, false},
		{"x", testupstream.ModuleVersion{}, true},
		{"../etc@1", testupstream.ModuleVersion{}, true},
	}
	for _, tc := range tests {
		got, err := testupstream.ParseModuleVersion(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseModuleVersion(%q) = %+v, %v", tc.in, got, err)
		}
	}
}

// A subset holds the named owners' modules and everything they depend on,
// and nothing else; an upstream serves it.
func TestSubsetIndex(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	for p, content := range map[string]string{
		"user/a/app.index":    `{"name": "a/app", "version": "1.0.0", "deps": {"b/lib": "1.0.0"}, "bin-deps": {"e/tool": {"version": "0.1.0"}}}` + "\n",
		"user/b/lib.index":    `{"name": "b/lib", "version": "1.0.0", "deps": {"c/deep/x": {"version": "0.1.0"}}}` + "\n",
		"user/c/deep/x.index": `{"name": "c/deep/x", "version": "0.1.0"}` + "\n",
		"user/d/other.index":  `{"name": "d/other", "version": "0.1.0"}` + "\n",
		"user/e/tool.index":   `{"name": "e/tool", "version": "0.1.0"}` + "\n",
	} {
		f := filepath.Join(src, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dst := filepath.Join(t.TempDir(), "subset")
	n, err := testupstream.SubsetIndex(src, dst, []string{"a"})
	if err != nil || n != 4 {
		t.Fatalf("SubsetIndex = %d, %v; want 4 modules", n, err)
	}
	for _, p := range []string{"user/a/app.index", "user/b/lib.index", "user/c/deep/x.index", "user/e/tool.index"} {
		if _, err := os.Stat(filepath.Join(dst, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dst, "user/d/other.index")); err == nil {
		t.Error("the subset holds a module nothing asked for")
	}
	if _, err := testupstream.SubsetIndex(src, dst, []string{"a"}); err == nil {
		t.Error("SubsetIndex wrote into an existing directory")
	}
	if _, err := testupstream.SubsetIndex(src, filepath.Join(t.TempDir(), "none"), []string{"nobody"}); err == nil {
		t.Error("SubsetIndex of no module succeeded")
	}
	u := testupstream.Start(t, testupstream.Options{IndexSource: dst})
	if got := u.Index.Versions("c/deep/x"); len(got) != 1 {
		t.Errorf("upstream on the subset: versions of c/deep/x = %v", got)
	}
}
