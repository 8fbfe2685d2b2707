package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"moonbit-registry/internal/testsupport"
	"moonbit-registry/internal/testupstream"
)

// idxSnapshotFiles is the number of .index files in the snapshot in testdata/.
const idxSnapshotFiles = 887

// idxUpstreamTree returns every file of rev in the upstream's bare
// repository, by slash path, as git itself has it.
func idxUpstreamTree(t testing.TB, up *testupstream.Upstream, rev string) map[string][]byte {
	t.Helper()
	cmd := exec.Command("git", "-C", up.Index.Dir(), "archive", "--format=tar", rev)
	cmd.Env = up.Index.GitEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git archive %s: %v: %s", rev, err, stderr.String())
	}
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(out))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading git archive: %v", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue // directories and the pax header carrying the commit id
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[hdr.Name] = data
	}
	return files
}

// idxWorkTree returns every file of a client's checkout, .git excluded.
func idxWorkTree(dir string) (map[string][]byte, error) {
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		files[filepath.ToSlash(rel)] = data
		return err
	})
	return files, err
}

// idxSameTree says how got differs from want: missing, extra and
// different files (a few of each named), or nil when identical.
func idxSameTree(got, want map[string][]byte) error {
	var missing, extra, differ []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			missing = append(missing, p)
		case !bytes.Equal(g, w):
			differ = append(differ, p)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			extra = append(extra, p)
		}
	}
	if len(missing)+len(extra)+len(differ) == 0 {
		return nil
	}
	few := func(s []string) []string {
		sort.Strings(s)
		return s[:min(len(s), 5)]
	}
	return fmt.Errorf("checkout has %d files, upstream %d: %d missing %q, %d extra %q, %d differ %q",
		len(got), len(want), len(missing), few(missing), len(extra), few(extra), len(differ), few(differ))
}

// idxCheckClone fails unless the client's checkout is want file for file,
// and a few hard names are byte-identical to upstream's Index.File too.
func idxCheckClone(t testing.TB, up *testupstream.Upstream, c *moonClient, want map[string][]byte) {
	t.Helper()
	got, err := idxWorkTree(c.indexDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := idxSameTree(got, want); err != nil {
		t.Error(err)
	}
	// Names that stress the layout: nested, and two non-ASCII ones.
	for _, m := range []string{"moonbitlang/lex/runtime", "illusory0x0/🐫", "CAIMEOX/原来可以发中文包"} {
		p := "user/" + m + ".index"
		up := up.Index.File(m)
		if len(up) == 0 || !bytes.Equal(got[p], up) {
			t.Errorf("%s: clone has %d bytes, upstream %d; want identical", p, len(got[p]), len(up))
		}
	}
}

// idxHead is the commit the client's checkout is at.
func idxHead(ctx context.Context, t testing.TB, c *moonClient) string {
	t.Helper()
	out, err := c.git(ctx, "-C", c.indexDir, "rev-parse", "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// idxUpHead is the commit upstream's main points to.
func idxUpHead(ctx context.Context, t testing.TB, up *testupstream.Upstream) string {
	t.Helper()
	h, err := up.Index.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(h)
}

// idxLogRecords parses the registry's JSON log lines; others are skipped.
func idxLogRecords(logs string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(logs, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil {
			out = append(out, rec)
		}
	}
	return out
}

func idxStr(rec map[string]any, key string) string {
	s, _ := rec[key].(string)
	return s
}

// idxWaitRecord waits, at most d, for a log record of r matching match and
// returns it; nil after d.
func idxWaitRecord(r *registry, d time.Duration, match func(map[string]any) bool) map[string]any {
	deadline := time.Now().Add(d)
	for {
		for _, rec := range idxLogRecords(r.Logs()) {
			if match(rec) {
				return rec
			}
		}
		if time.Now().After(deadline) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// idxSyncedTo matches the mirror's "index synced" record for commit to.
func idxSyncedTo(to string) func(map[string]any) bool {
	return func(rec map[string]any) bool {
		return idxStr(rec, "message") == "index synced" && idxStr(rec, "to") == to
	}
}

// idxStatus GETs path on the registry and returns the status code.
func idxStatus(t testing.TB, base, path string) int {
	t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// idxRawRequest sends target exactly as given (no cleaning of "..", no
// re-encoding) and returns the response with its body.
func idxRawRequest(t testing.TB, base, method, target string) (*http.Response, []byte) {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: git/2.39.5\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
		method, target, u.Host)
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, target, err)
	}
	return resp, body
}

// idxMirrorState is what a push could change in the registry's mirror:
// every ref and the commit main's work tree is at.
func idxMirrorState(t testing.TB, root string) string {
	t.Helper()
	cmd := exec.Command("git", "-C", filepath.Join(root, "data", "index"), "for-each-ref", "--format=%(refname) %(objectname)")
	cmd.Env = testsupport.GitEnv(t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		t.Fatalf("listing the mirror's refs: %v: %s", err, out)
	}
	return string(out)
}

// idxHasVersion reports whether the client's index lists module@version.
func idxHasVersion(c *moonClient, module, version string) bool {
	vs, err := c.Versions(module)
	return err == nil && slices.Contains(vs, version)
}

// TestIndexClone clones the index through the proxy with moon's exact
// command under each git wire protocol: every file must arrive and be
// byte-identical to upstream's, odd names included.
func TestIndexClone(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	// The whole snapshot: what a client's first clone of the real index
	// costs, twenty at once below.
	snapshot, err := testupstream.DefaultIndexSource()
	if err != nil {
		t.Fatal(err)
	}
	up := startUpstream(t, testupstream.Options{IndexSource: snapshot})
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL()})
	want := idxUpstreamTree(t, up, "main")
	if len(want) != idxSnapshotFiles {
		t.Fatalf("upstream main has %d files, want the snapshot's %d", len(want), idxSnapshotFiles)
	}
	head := idxUpHead(ctx, t, up)

	for _, tc := range []struct {
		name string
		// version is protocol.version for the client; "" leaves git's
		// default, as moon does.
		version string
		// trace is the packet git must receive first from the server
		// under that protocol; "" checks nothing.
		trace string
	}{
		{name: "moon default", version: ""},
		{name: "protocol v2", version: "2", trace: "git< version 2"},
		{name: "protocol v1", version: "1", trace: "git< version 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newMoonClient(t, reg.URL)
			traceFile := filepath.Join(t.TempDir(), "packet.trace")
			c.env = append(c.env, "GIT_TRACE_PACKET="+traceFile)
			if tc.version != "" {
				c.env = append(c.env, "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=protocol.version", "GIT_CONFIG_VALUE_0="+tc.version)
			}
			if err := c.CloneIndex(ctx); err != nil {
				t.Fatal(err)
			}
			idxCheckClone(t, up, c, want)
			if got := idxHead(ctx, t, c); got != head {
				t.Errorf("clone is at %s, upstream main at %s", got, head)
			}
			// The setting must have reached the wire, or this case
			// tested the default protocol again.
			trace, err := os.ReadFile(traceFile)
			if err != nil {
				t.Fatal(err)
			}
			if tc.trace != "" && !bytes.Contains(trace, []byte(tc.trace)) {
				t.Errorf("packet trace lacks %q: the server did not speak protocol %s", tc.trace, tc.version)
			}
		})
	}

	// Twenty clients at once: git backends are bounded by the proxy, so
	// some wait for a slot; all must still get the whole index.
	t.Run("20 concurrent clones", func(t *testing.T) {
		const n = 20
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		clients := make([]*moonClient, n)
		for i := range clients {
			clients[i] = newMoonClient(t, reg.URL)
		}
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i, c := range clients {
			wg.Go(func() {
				if err := c.CloneIndex(cctx); err != nil {
					errs[i] = err
					return
				}
				got, err := idxWorkTree(c.indexDir)
				if err == nil {
					err = idxSameTree(got, want)
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("client %d: %v", i, err)
			}
		}
	})
}

// TestIndexReadOnly checks that nothing but upload-pack reaches the
// mirror: pushes fail, and dumb-HTTP paths, the repository's own files,
// path traversal and receive-pack give no content; writing methods are
// not allowed.
func TestIndexReadOnly(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	up := startUpstream(t, testupstream.Options{})
	root := t.TempDir()
	// A marker only a file leak could reveal.
	marker := "e2e-secret-marker-7f3a9c"
	if err := os.WriteFile(filepath.Join(root, "registry.toml"), []byte("# "+marker+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	reg := startRegistry(t, registryOptions{Root: root, UpstreamURL: up.URL()})
	before := idxMirrorState(t, root)
	head := idxUpHead(ctx, t, up)

	t.Run("push refused", func(t *testing.T) {
		c := newMoonClient(t, reg.URL)
		if err := c.CloneIndex(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := c.git(ctx, "-C", c.indexDir, "-c", "user.name=e2e", "-c", "user.email=e2e@example.invalid",
			"commit", "--allow-empty", "-m", "should never land"); err != nil {
			t.Fatal(err)
		}
		pushed := idxHead(ctx, t, c)
		for _, ref := range []string{"HEAD:refs/heads/main", "HEAD:refs/heads/e2e-new-branch"} {
			out, err := c.git(ctx, "-C", c.indexDir, "push", "origin", ref)
			// 403 from the receive-pack advertisement: refused by the
			// server, not by some client-side precondition.
			if err == nil || !strings.Contains(out, "403") {
				t.Errorf("git push origin %s: err %v, want a failure with HTTP 403:\n%s", ref, err, out)
			}
		}
		if after := idxMirrorState(t, root); after != before {
			t.Errorf("mirror refs changed by a push:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		cmd := exec.Command("git", "-C", filepath.Join(root, "data", "index"), "cat-file", "-e", pushed)
		cmd.Env = testsupport.GitEnv(t.TempDir())
		if cmd.Run() == nil {
			t.Errorf("the pushed commit %s is in the mirror", pushed)
		}
	})

	t.Run("no file content", func(t *testing.T) {
		gitConfig, err := os.ReadFile(filepath.Join(root, "data", "index", ".git", "config"))
		if err != nil {
			t.Fatal(err)
		}
		indexFile := string(up.Index.File("moonbitlang/lex/runtime"))
		// Control: the one thing that is served does carry the strings
		// looked for below, so their absence elsewhere means something.
		if resp, body := idxRawRequest(t, reg.URL, http.MethodGet, "/git/index/info/refs?service=git-upload-pack"); resp.StatusCode != http.StatusOK ||
			!bytes.Contains(body, []byte(head)) || !bytes.Contains(body, []byte("refs/heads/main")) {
			t.Errorf("upload-pack advertisement: status %d, body %q; want 200 naming main at %s", resp.StatusCode, body, head)
		}
		for _, tc := range []struct {
			target    string
			forbidden []string
		}{
			{"/git/index/config", []string{strings.TrimSpace(string(gitConfig)), "uploadpack", "[core]"}},
			{"/git/index/.git/config", []string{strings.TrimSpace(string(gitConfig)), "uploadpack", "[core]"}},
			{"/git/index/HEAD", []string{"ref: refs/heads/"}},
			{"/git/index/.git/HEAD", []string{"ref: refs/heads/"}},
			{"/git/index/objects/info/packs", []string{"P pack-"}},
			{"/git/index/info/refs", []string{head, "refs/heads/main"}},
			{"/git/index/info/refs?service=git-receive-pack", []string{head, "refs/heads/main", "report-status"}},
			{"/git/index/git-receive-pack", []string{head, "refs/heads/main"}},
			{"/git/index/user/moonbitlang/lex/runtime.index", []string{indexFile[:200]}},
			{"/git/index/../../registry.toml", []string{marker}},
			{"/git/index/%2e%2e/%2e%2e/registry.toml", []string{marker}},
			{"/git/index/..%2f..%2fregistry.toml", []string{marker}},
			{"/git/index/..%2F..%2F.git/config", []string{"uploadpack", "[core]"}},
		} {
			resp, body := idxRawRequest(t, reg.URL, http.MethodGet, tc.target)
			status, via := resp.StatusCode, ""
			// Go's ServeMux answers a path with dot segments with a
			// redirect to the cleaned path, which reaches no handler
			// under /git/index; what counts is where that redirect
			// leads, so follow it once, raw as well.
			if loc := resp.Header.Get("Location"); status/100 == 3 && strings.Contains(tc.target, "/../") && loc != "" {
				lu, err := url.Parse(loc)
				if err != nil || (lu.Host != "" && "http://"+lu.Host != reg.URL) {
					t.Errorf("GET %s: redirect to %q, off this server", tc.target, loc)
					continue
				}
				via = fmt.Sprintf(" (via %d to %s)", status, lu.RequestURI())
				for _, f := range tc.forbidden {
					if bytes.Contains(body, []byte(f)) {
						t.Errorf("GET %s: redirect body contains %q:\n%s", tc.target, f, body)
					}
				}
				resp, body = idxRawRequest(t, reg.URL, http.MethodGet, lu.RequestURI())
				status = resp.StatusCode
			}
			t.Logf("GET %s%s: %d", tc.target, via, status)
			if status != http.StatusForbidden && status != http.StatusNotFound {
				t.Errorf("GET %s%s: status %d, want 403 or 404 (Location %q, body %q)",
					tc.target, via, status, resp.Header.Get("Location"), body)
			}
			for _, f := range tc.forbidden {
				if f != "" && bytes.Contains(body, []byte(f)) {
					t.Errorf("GET %s%s: body contains %q:\n%s", tc.target, via, f, body)
				}
			}
		}
	})

	t.Run("writing methods", func(t *testing.T) {
		for _, target := range []string{
			"/git/index/info/refs?service=git-upload-pack",
			"/git/index/git-upload-pack",
			"/git/index/git-receive-pack",
			"/git/index/HEAD",
		} {
			for _, method := range []string{http.MethodPut, http.MethodDelete} {
				resp, body := idxRawRequest(t, reg.URL, method, target)
				if resp.StatusCode != http.StatusMethodNotAllowed {
					t.Errorf("%s %s: status %d, want 405: %q", method, target, resp.StatusCode, body)
				}
			}
		}
	})

	if after := idxMirrorState(t, root); after != before {
		t.Errorf("mirror refs changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestIndexPeriodicSync: a running server's own periodic sync picks up a
// newly published version, and a client's pull then fast-forwards to it.
func TestIndexPeriodicSync(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	up := startUpstream(t, testupstream.Options{})
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL(), Env: []string{"MOONBIT_REGISTRY_INDEX_SYNC_INTERVAL=1s"}})
	c := newMoonClient(t, reg.URL)
	if err := c.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}
	old := idxHead(ctx, t, c)

	const module, version = "moonbitlang/lex/runtime", "99.0.0"
	if err := up.Index.AddVersion(ctx, module, version, nil); err != nil {
		t.Fatal(err)
	}
	head := idxUpHead(ctx, t, up)
	rec := idxWaitRecord(reg, 30*time.Second, idxSyncedTo(head))
	if rec == nil {
		t.Fatalf("no periodic sync to %s within 30s:\n%s", head, reg.Logs())
	}
	if added, _ := rec["added"].(float64); added != 1 {
		t.Errorf("sync record reports %v added versions, want 1: %v", rec["added"], rec)
	}

	if err := c.PullIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if got := idxHead(ctx, t, c); got != head {
		t.Errorf("after pull the client is at %s, upstream at %s", got, head)
	}
	if _, err := c.git(ctx, "-C", c.indexDir, "merge-base", "--is-ancestor", old, "HEAD"); err != nil {
		t.Errorf("pull did not fast-forward from %s: %v", old, err)
	}
	if !idxHasVersion(c, module, version) {
		t.Errorf("%s@%s not in the client's index after pull", module, version)
	}
	got, _ := os.ReadFile(filepath.Join(c.indexDir, "user", module+".index"))
	if want := up.Index.File(module); !bytes.Equal(got, want) {
		t.Errorf("client's %s.index differs from upstream's (%d vs %d bytes)", module, len(got), len(want))
	}
}

// TestIndexSyncCommand: the one-shot sync, run on the root of a running
// server, reports each new version, and the server then serves it over git. One
// client pulls after every sync; another, shallow-cloned before both,
// pulls only at the end and must still fast-forward over the two syncs.
func TestIndexSyncCommand(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	up := startUpstream(t, testupstream.Options{})
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL()})
	eager, late := newMoonClient(t, reg.URL), newMoonClient(t, reg.URL)
	for _, c := range []*moonClient{eager, late} {
		if err := c.CloneIndex(ctx); err != nil {
			t.Fatal(err)
		}
	}
	lateStart := idxHead(ctx, t, late)
	if out, _ := late.git(ctx, "-C", late.indexDir, "rev-parse", "--is-shallow-repository"); strings.TrimSpace(out) != "true" {
		t.Fatalf("moon's clone is not shallow: %q", out)
	}

	additions := []testupstream.ModuleVersion{
		{Module: "illusory0x0/🐫", Version: "99.0.0"},
		{Module: "e2etest/fresh/nested", Version: "0.1.0"}, // a module new to the index
	}
	for _, a := range additions {
		before := idxHead(ctx, t, eager)
		if err := up.Index.AddVersion(ctx, a.Module, a.Version, nil); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, code := runRegistry(t, reg.Root, up.URL(), "sync")
		if code != 0 {
			t.Fatalf("sync: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		if want := "added " + a.Module + "@" + a.Version + "\n"; !strings.Contains(stdout, want) {
			t.Errorf("sync stdout lacks %q:\n%s", want, stdout)
		}
		if err := eager.PullIndex(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := eager.git(ctx, "-C", eager.indexDir, "merge-base", "--is-ancestor", before, "HEAD"); err != nil {
			t.Errorf("pull after adding %s did not fast-forward: %v", a.Module, err)
		}
		got, _ := os.ReadFile(filepath.Join(eager.indexDir, "user", a.Module+".index"))
		if want := up.Index.File(a.Module); !bytes.Equal(got, want) || !idxHasVersion(eager, a.Module, a.Version) {
			t.Errorf("after sync and pull the client's %s.index (%d bytes) is not upstream's with %s (%d bytes)",
				a.Module, len(got), a.Version, len(want))
		}
	}

	stdout, stderr, code := runRegistry(t, reg.Root, up.URL(), "sync")
	if code != 0 || !strings.Contains(stdout, "index up to date") {
		t.Errorf("sync with nothing new: exit %d, stdout %q, stderr %q; want exit 0 and \"index up to date\"", code, stdout, stderr)
	}

	head := idxUpHead(ctx, t, up)
	if err := late.PullIndex(ctx); err != nil {
		t.Fatalf("shallow clone's pull over two syncs: %v", err)
	}
	if got := idxHead(ctx, t, late); got != head {
		t.Errorf("shallow client is at %s after pull, upstream at %s", got, head)
	}
	if _, err := late.git(ctx, "-C", late.indexDir, "merge-base", "--is-ancestor", lateStart, "HEAD"); err != nil {
		t.Errorf("shallow client's pull did not fast-forward from %s: %v", lateStart, err)
	}
	got, err := idxWorkTree(late.indexDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := idxSameTree(got, idxUpstreamTree(t, up, "main")); err != nil {
		t.Errorf("shallow client after pull: %v", err)
	}
}

// TestIndexUpstreamDown: with upstream gone, clients still clone and pull
// what the mirror last synced, the failing sync is logged and the server
// stays healthy.
func TestIndexUpstreamDown(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	up := startUpstream(t, testupstream.Options{})
	// Stale only after a long while: the test is about serving the last
	// good mirror, and a loaded machine must not make it stale first.
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL(), Env: []string{"MOONBIT_REGISTRY_INDEX_SYNC_INTERVAL=1s", "MOONBIT_REGISTRY_INDEX_STALE_AFTER=1h"}})
	puller := newMoonClient(t, reg.URL)
	if err := puller.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}

	// Something new in the mirror that only a pull can bring to puller.
	const module, version = "CAIMEOX/原来可以发中文包", "99.0.0"
	if err := up.Index.AddVersion(ctx, module, version, nil); err != nil {
		t.Fatal(err)
	}
	head := idxUpHead(ctx, t, up)
	if idxWaitRecord(reg, 30*time.Second, idxSyncedTo(head)) == nil {
		t.Fatalf("no sync to %s within 30s:\n%s", head, reg.Logs())
	}
	want := idxUpstreamTree(t, up, "main")

	if err := up.Down(); err != nil {
		t.Fatal(err)
	}
	failed := idxWaitRecord(reg, 30*time.Second, func(rec map[string]any) bool {
		return idxStr(rec, "level") == "error" && strings.Contains(idxStr(rec, "message"), "index sync failed") &&
			strings.Contains(idxStr(rec, "error"), up.IndexURL())
	})
	if failed == nil {
		t.Fatalf("no error-level record of a failed sync from %s within 30s:\n%s", up.IndexURL(), reg.Logs())
	}

	fresh := newMoonClient(t, reg.URL)
	if err := fresh.CloneIndex(ctx); err != nil {
		t.Fatalf("fresh clone with upstream down: %v", err)
	}
	idxCheckClone(t, up, fresh, want)
	if err := puller.PullIndex(ctx); err != nil {
		t.Fatalf("pull with upstream down: %v", err)
	}
	if got := idxHead(ctx, t, puller); got != head {
		t.Errorf("pull with upstream down reached %s, want the mirrored %s", got, head)
	}
	if !idxHasVersion(puller, module, version) {
		t.Errorf("%s@%s not in the client's index after pulling from the mirror", module, version)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code := idxStatus(t, reg.URL, path); code != http.StatusOK {
			t.Errorf("%s = %d with upstream down, want 200", path, code)
		}
	}
}

// TestIndexRewriteHistory: when upstream force-pushes a new history, the
// mirror follows it loudly, and fresh clones get the new history. The
// one-shot sync says so on stdout too.
func TestIndexRewriteHistory(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	up := startUpstream(t, testupstream.Options{})
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL(), Env: []string{"MOONBIT_REGISTRY_INDEX_SYNC_INTERVAL=1s"}})
	// A second root, synced only by the one-shot command.
	oneShot := t.TempDir()
	if stdout, stderr, code := runRegistry(t, oneShot, up.URL(), "sync"); code != 0 || !strings.Contains(stdout, "cloned the index") {
		t.Fatalf("first one-shot sync: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	old := idxUpHead(ctx, t, up)

	if err := up.Index.RewriteHistory(ctx); err != nil {
		t.Fatal(err)
	}
	head := idxUpHead(ctx, t, up)
	if head == old {
		t.Fatalf("RewriteHistory left main at %s", old)
	}
	loud := func(rec map[string]any) bool {
		lvl := idxStr(rec, "level")
		return (lvl == "error" || lvl == "warn") && strings.Contains(strings.ToLower(idxStr(rec, "message")), "rewr")
	}

	t.Run("serve", func(t *testing.T) {
		if idxWaitRecord(reg, 30*time.Second, idxSyncedTo(head)) == nil {
			t.Fatalf("no sync to the rewritten %s within 30s:\n%s", head, reg.Logs())
		}
		if idxWaitRecord(reg, 0, loud) == nil {
			t.Errorf("no warn/error record about the history rewrite:\n%s", reg.Logs())
		}
		c := newMoonClient(t, reg.URL)
		if err := c.CloneIndex(ctx); err != nil {
			t.Fatal(err)
		}
		if got := idxHead(ctx, t, c); got != head {
			t.Errorf("fresh clone after the rewrite is at %s, want the new history's %s (old %s)", got, head, old)
		}
		idxCheckClone(t, up, c, idxUpstreamTree(t, up, "main"))
	})

	t.Run("sync command", func(t *testing.T) {
		stdout, stderr, code := runRegistry(t, oneShot, up.URL(), "sync")
		if code != 0 {
			t.Fatalf("sync: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		if !strings.Contains(stdout, "rewrote the index history") {
			t.Errorf("sync stdout does not mention the rewrite:\n%s", stdout)
		}
		if !slices.ContainsFunc(idxLogRecords(stderr), loud) {
			t.Errorf("sync logged no warn/error record about the rewrite:\n%s", stderr)
		}
	})
}

// TestCloneRightAfterStart: a client that clones while the first index sync
// is still running waits for it (server.first_sync_wait) instead of
// getting a 503, and gets the whole index.
func TestCloneRightAfterStart(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	up := startUpstream(t, testupstream.Options{})
	// Every index request of the first sync is slow.
	up.Faults.Delay(2*time.Second, testupstream.OnPrefix(testupstream.PrefixIndex))
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL(), NoWaitReady: true})
	start := time.Now()
	c := newMoonClient(t, reg.URL)
	if err := c.CloneIndex(ctx); err != nil {
		t.Fatalf("clone while the first sync runs: %v\n%s", err, reg.Logs())
	}
	t.Logf("clone right after start took %v (first sync delayed by the upstream)", time.Since(start))
	if !idxHasVersion(c, "moonbitlang/x", up.Index.Versions("moonbitlang/x")[0]) {
		t.Error("the clone lacks moonbitlang/x")
	}
}

// TestIndexFreshOnRequest: with index.check_interval, a version published
// upstream reaches a client's next pull through the registry within the
// interval, however long sync_interval is (an hour here).
func TestIndexFreshOnRequest(t *testing.T) {
	ctx := t.Context()
	up := startUpstream(t, testupstream.Options{})
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL(), Env: []string{"MOONBIT_REGISTRY_INDEX_CHECK_INTERVAL=2s"}})
	c := newMoonClient(t, reg.URL)
	if err := c.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}
	var worst time.Duration
	for i := range 3 {
		version := fmt.Sprintf("0.%d.0", i+1)
		if err := up.Index.AddVersion(ctx, "freshtest/module", version, nil); err != nil {
			t.Fatal(err)
		}
		published := time.Now()
		for {
			if err := c.PullIndex(ctx); err != nil {
				t.Fatal(err)
			}
			if vs, _ := c.Versions("freshtest/module"); len(vs) == i+1 {
				break
			}
			if time.Since(published) > 15*time.Second {
				t.Fatalf("%s not visible to a pull 15s after it was published", version)
			}
			time.Sleep(100 * time.Millisecond)
		}
		worst = max(worst, time.Since(published))
	}
	t.Logf("a published version reached the client's pull within %s (check interval 2s)", worst.Round(10*time.Millisecond))
	if worst > 5*time.Second {
		t.Errorf("visible only after %s, want within the 2s interval and a sync", worst)
	}
	// Upstream looked at a bounded number of times: the pulls above were
	// about 10 a second.
	if n := strings.Count(reg.Logs(), `"args":["ls-remote"`); n < 3 || n > 20 {
		t.Errorf("upstream's tip looked at %d times, want one per publish or a few more, bounded by the interval", n)
	}
}
