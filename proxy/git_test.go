package proxy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"moonbit-registry/indexsync"
	"moonbit-registry/internal/testsupport"
	"moonbit-registry/internal/testupstream"
)

// gitTestEnv is a mirror synced from a test upstream and served through
// the proxy's git handler on 127.0.0.1.
type gitTestEnv struct {
	up     *testupstream.Upstream
	mirror *indexsync.Mirror
	srv    *httptest.Server
	url    string // clone URL: <srv>/git/index
}

// gitTestIndex writes a two-module index tree.
func gitTestIndex(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"user/alice/foo.index":               `{"name": "alice/foo", "version": "0.1.0", "checksum": "` + strings.Repeat("a", 64) + `"}` + "\n",
		"user/moonbitlang/lex/runtime.index": `{"name": "moonbitlang/lex/runtime", "version": "0.1.0", "checksum": "` + strings.Repeat("b", 64) + `"}` + "\n",
	}
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// gitTestLogger logs to t until the test ends.
func gitTestLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
}

// newGitTestEnv serves the small test index; see newGitTestEnvFrom.
func newGitTestEnv(t *testing.T, viaServer bool) *gitTestEnv {
	t.Helper()
	return newGitTestEnvFrom(t, gitTestIndex(t), viaServer)
}

// newGitTestEnvFrom serves the mirror with the whole proxy server when
// viaServer is set (as production mounts it), else with the bare handler.
func newGitTestEnvFrom(t *testing.T, src string, viaServer bool) *gitTestEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	up := testupstream.Start(t, testupstream.Options{IndexSource: src})
	m, err := indexsync.New(indexsync.Options{
		Dir:         filepath.Join(t.TempDir(), "data", "index"),
		UpstreamURL: up.IndexURL(),
		Logger:      zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// A marker in the repository config: it must never be served.
	testsupport.Git(t, m.Dir(), "config", "secret.marker", "do-not-serve-0451")
	var h http.Handler
	if viaServer {
		h = New(Options{Index: m, Logger: gitTestLogger(t)}).Handler()
	} else {
		h = newGitHandler(m, 0, gitTestLogger(t))
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &gitTestEnv{up: up, mirror: m, srv: srv, url: srv.URL + "/git/index"}
}

func TestGitCloneAndPullThroughHandler(t *testing.T) {
	for _, proto := range []string{"0", "1", "2"} {
		t.Run("protocol.version="+proto, func(t *testing.T) {
			env := newGitTestEnv(t, proto == "2")
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			dir := filepath.Join(t.TempDir(), "client")
			p := "protocol.version=" + proto
			testsupport.Git(t, "", "-c", p, "clone", "--depth", "1", "--single-branch", "--no-tags", env.url, dir)
			data, err := os.ReadFile(filepath.Join(dir, "user", "moonbitlang", "lex", "runtime.index"))
			if err != nil || !strings.Contains(string(data), `"0.1.0"`) {
				t.Fatalf("cloned index file: %v %q", err, data)
			}
			if b := testsupport.Git(t, dir, "rev-parse", "--abbrev-ref", "HEAD"); b != "main" {
				t.Fatalf("clone is on %q, want main", b)
			}

			// Upstream publishes twice; the mirror syncs; the client's
			// plain pull (as moon runs it) fast-forwards.
			for _, v := range []string{"0.2.0", "0.3.0"} {
				if err := env.up.Index.AddVersion(ctx, "alice/foo", v, nil); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := env.mirror.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			before := testsupport.Git(t, dir, "rev-parse", "HEAD")
			testsupport.Git(t, dir, "-c", p, "pull", "origin", "main")
			after := testsupport.Git(t, dir, "rev-parse", "HEAD")
			head, err := env.up.Index.Head(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if after != head {
				t.Fatalf("after pull client is at %s, want %s", after, head)
			}
			testsupport.Git(t, dir, "merge-base", "--is-ancestor", before, after)
			data, _ = os.ReadFile(filepath.Join(dir, "user", "alice", "foo.index"))
			if !strings.Contains(string(data), `"0.3.0"`) {
				t.Fatalf("pulled index file lacks the new version:\n%s", data)
			}

			// Pushing is refused.
			testsupport.Git(t, dir, "commit", "--quiet", "--allow-empty", "-m", "evil")
			if out, err := testsupport.TryGit(t, dir, "-c", p, "push", "origin", "HEAD:main"); err == nil {
				t.Fatalf("push succeeded: %s", out)
			}
			if got := testsupport.Git(t, env.mirror.Dir(), "rev-parse", "refs/heads/main"); got != head {
				t.Fatalf("mirror main moved to %s by a push", got)
			}
		})
	}
}

// The whole real index goes through the handler, as moon clones it.
func TestGitCloneRealIndex(t *testing.T) {
	src, err := testupstream.DefaultIndexSource()
	if err != nil {
		t.Fatal(err)
	}
	env := newGitTestEnvFrom(t, src, true)
	dir := filepath.Join(t.TempDir(), "client")
	start := time.Now()
	testsupport.Git(t, "", "clone", "--depth", "1", "--single-branch", "--no-tags", env.url, dir)
	t.Logf("clone of the real index took %v", time.Since(start))
	for _, p := range []string{"user/moonbitlang/lex/runtime.index", "user/illusory0x0/🐫.index", "user/CAIMEOX/原来可以发中文包.index"} {
		want, err := os.ReadFile(filepath.Join(src, filepath.FromSlash(p)))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p)))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs from the snapshot (err %v)", p, err)
		}
	}
	files := testsupport.Git(t, dir, "ls-files", "user")
	if n := strings.Count(files, "\n") + 1; n != 887 {
		t.Errorf("clone has %d index files, want 887", n)
	}
}

// gitTestRaw sends a request with the path exactly as given (no cleaning
// by a client library) and returns status and body.
func gitTestRaw(t *testing.T, addr, method, path string, header http.Header, body []byte) (int, http.Header, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, path, addr)
	for k, vs := range header {
		for _, v := range vs {
			fmt.Fprintf(&req, "%s: %s\r\n", k, v)
		}
	}
	if body != nil {
		fmt.Fprintf(&req, "Content-Length: %d\r\n", len(body))
	}
	req.WriteString("\r\n")
	req.Write(body)
	if _, err := conn.Write(req.Bytes()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestGitHandlerServesNothingElse(t *testing.T) {
	t.Parallel()
	for _, viaServer := range []bool{false, true} {
		t.Run(fmt.Sprintf("viaServer=%v", viaServer), func(t *testing.T) {
			env := newGitTestEnv(t, viaServer)
			addr := env.srv.Listener.Addr().String()
			head := testsupport.Git(t, env.mirror.Dir(), "rev-parse", "HEAD")
			obj := "/git/index/objects/" + head[:2] + "/" + head[2:]
			tests := []struct {
				method, path string
				want         int // 0: anything but 200
			}{
				{"GET", "/git/index/config", http.StatusNotFound},
				{"GET", "/git/index/HEAD", http.StatusNotFound},
				{"GET", "/git/index/.git/config", http.StatusNotFound},
				{"GET", "/git/index/.git/HEAD", http.StatusNotFound},
				{"GET", "/git/index/info/refs", http.StatusNotFound},
				{"GET", "/git/index/info/refs?service=git-upload-pack&service=x", http.StatusNotFound},
				{"GET", "/git/index/info/refs?service=evil", http.StatusNotFound},
				{"GET", "/git/index/objects/info/packs", http.StatusNotFound},
				{"GET", obj, http.StatusNotFound},
				{"GET", "/git/index/user/alice/foo.index", http.StatusNotFound},
				{"GET", "/git/index/../../registry.toml", 0},
				{"GET", "/git/index/..%2f..%2fregistry.toml", 0},
				{"GET", "/git/index/info/refs/../../config", 0},
				{"GET", "/git/index/%2e%2e/%2e%2e/etc/passwd", 0},
				{"GET", "/git/index//config", 0},
				{"GET", "/git/index/info/refs?service=git-receive-pack", http.StatusForbidden},
				{"POST", "/git/index/git-receive-pack", http.StatusForbidden},
				{"GET", "/git/index/git-upload-pack", http.StatusMethodNotAllowed},
				{"POST", "/git/index/info/refs?service=git-upload-pack", http.StatusMethodNotAllowed},
				{"PUT", "/git/index/info/refs?service=git-upload-pack", http.StatusMethodNotAllowed},
				{"PUT", "/git/index/git-upload-pack", http.StatusMethodNotAllowed},
				{"DELETE", "/git/index/config", http.StatusMethodNotAllowed},
				{"OPTIONS", "/git/index/info/refs", http.StatusMethodNotAllowed},
				{"PROPFIND", "/git/index/", http.StatusMethodNotAllowed},
			}
			for _, tt := range tests {
				var body []byte
				if tt.method == "POST" || tt.method == "PUT" {
					body = []byte("0000")
				}
				status, _, got := gitTestRaw(t, addr, tt.method, tt.path, nil, body)
				if viaServer && tt.want == http.StatusMethodNotAllowed && status == http.StatusNotFound {
					// The server's mux may answer an odd path before us.
					continue
				}
				if tt.want == 0 && status == http.StatusOK || tt.want != 0 && status != tt.want {
					t.Errorf("%s %s: status %d, want %d", tt.method, tt.path, status, tt.want)
				}
				for _, leak := range []string{"do-not-serve-0451", "[core]", "ref: refs/heads", "repositoryformatversion", "root:"} {
					if strings.Contains(got, leak) {
						t.Errorf("%s %s: body leaks %q:\n%s", tt.method, tt.path, leak, got)
					}
				}
			}
		})
	}
}

// notReadyIndex is an index before its first sync.
type notReadyIndex struct{ dir string }

func (n notReadyIndex) Repository() string { return n.dir }
func (n notReadyIndex) Ready() error       { return errors.New("first sync not finished") }

func TestGitHandlerNotReady(t *testing.T) {
	t.Parallel()
	for dir, index := range map[string]Index{"none": nil, "not-yet": notReadyIndex{filepath.Join(t.TempDir(), "not-yet")}} {
		srv := httptest.NewServer(newGitHandler(index, 0, zerolog.Nop()))
		status, hdr, body := gitTestRaw(t, srv.Listener.Addr().String(), "GET", "/git/index/info/refs?service=git-upload-pack", nil, nil)
		if status != http.StatusServiceUnavailable || !strings.Contains(body, "not ready") || hdr.Get("Retry-After") == "" {
			t.Errorf("dir %q: %d %q", dir, status, body)
		}
		// Refusals do not depend on the repository.
		if status, _, _ := gitTestRaw(t, srv.Listener.Addr().String(), "POST", "/git/index/git-receive-pack", nil, []byte("0000")); status != http.StatusForbidden {
			t.Errorf("dir %q: receive-pack %d", dir, status)
		}
		srv.Close()
	}
}

func gitTestGzip(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Requests as git sends them by hand: protocol v2 announced in a header,
// gzip bodies, HEAD, and bodies over the limit.
func TestGitHandlerRequests(t *testing.T) {
	t.Parallel()
	env := newGitTestEnv(t, false)
	addr := env.srv.Listener.Addr().String()
	head := testsupport.Git(t, env.mirror.Dir(), "rev-parse", "HEAD")
	v2 := http.Header{"Git-Protocol": {"version=2"}, "Content-Type": {"application/x-git-upload-pack-request"}}
	lsRefs := []byte("0014command=ls-refs\n0000")

	status, hdr, body := gitTestRaw(t, addr, "GET", "/git/index/info/refs?service=git-upload-pack", v2, nil)
	if status != 200 || !strings.Contains(body, "version 2") || hdr.Get("Content-Type") != "application/x-git-upload-pack-advertisement" {
		t.Fatalf("v2 info/refs: %d %q %q", status, hdr, body)
	}
	status, _, body = gitTestRaw(t, addr, "GET", "/git/index/info/refs?service=git-upload-pack", nil, nil)
	if status != 200 || !strings.Contains(body, head+" HEAD") || !strings.Contains(body, "symref=HEAD:refs/heads/main") {
		t.Fatalf("v0 info/refs: %d %q", status, body)
	}
	if status, _, body := gitTestRaw(t, addr, "HEAD", "/git/index/info/refs?service=git-upload-pack", nil, nil); status != 200 || body != "" {
		t.Errorf("HEAD info/refs: %d %q", status, body)
	}
	for _, hostile := range []string{"version=2\x01", "version=2 x", strings.Repeat("a", 300)} {
		h := http.Header{"Git-Protocol": {hostile}}
		if status, _, _ := gitTestRaw(t, addr, "GET", "/git/index/info/refs?service=git-upload-pack", h, nil); status != 200 && status != 400 {
			t.Errorf("Git-Protocol %q: status %d", hostile, status)
		}
	}

	for _, enc := range []string{"", "gzip", "x-gzip"} {
		h := v2.Clone()
		payload := lsRefs
		if enc != "" {
			h.Set("Content-Encoding", enc)
			payload = gitTestGzip(t, lsRefs)
		}
		status, _, body := gitTestRaw(t, addr, "POST", "/git/index/git-upload-pack", h, payload)
		if status != 200 || !strings.Contains(body, head+" refs/heads/main") {
			t.Errorf("ls-refs with encoding %q: %d %q", enc, status, body)
		}
	}

	big := make([]byte, maxGitRequestBody+1)
	h := v2.Clone()
	h.Set("Content-Encoding", "gzip")
	if status, _, _ := gitTestRaw(t, addr, "POST", "/git/index/git-upload-pack", h, gitTestGzip(t, big)); status != http.StatusRequestEntityTooLarge {
		t.Errorf("gzip body over the limit: %d", status)
	}
	if status, _, _ := gitTestRaw(t, addr, "POST", "/git/index/git-upload-pack", v2, big); status != http.StatusRequestEntityTooLarge {
		t.Errorf("body over the limit: %d", status)
	}
	h.Set("Content-Encoding", "br")
	if status, _, _ := gitTestRaw(t, addr, "POST", "/git/index/git-upload-pack", h, lsRefs); status != http.StatusUnsupportedMediaType {
		t.Errorf("unknown encoding: %d", status)
	}
	h.Set("Content-Encoding", "gzip")
	if status, _, _ := gitTestRaw(t, addr, "POST", "/git/index/git-upload-pack", h, lsRefs); status != http.StatusBadRequest {
		t.Errorf("body that is not gzip: %d", status)
	}

	// Chunked request bodies (git sends large negotiations this way).
	req, _ := http.NewRequest("POST", env.url+"/git-upload-pack", io.NopCloser(bytes.NewReader(lsRefs)))
	req.Header = v2.Clone()
	req.ContentLength = -1
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), head+" refs/heads/main") {
		t.Errorf("chunked ls-refs: %d %q", resp.StatusCode, b)
	}
}

func TestGitProtocolHeader(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"version=2", "version=2"},
		{"version=1", "version=1"},
		{"version=2:object-format=sha1", "version=2:object-format=sha1"},
		{"", ""},
		{"version=2\n", ""},
		{"version=2;rm -rf", ""},
		{"version=2 ", ""},
		{strings.Repeat("v", maxGitProtocolLen+1), ""},
	}
	for _, tt := range tests {
		if got := gitProtocol(tt.in); got != tt.want {
			t.Errorf("gitProtocol(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// A header spelled with an underscore reaches CGI as the same variable as
// the hyphenated one (Git_Protocol is HTTP_GIT_PROTOCOL, which git reads):
// it must not get past the check of Git-Protocol.
func TestGitUnderscoreHeadersDropped(t *testing.T) {
	t.Parallel()
	env := newGitTestEnv(t, false)
	addr := env.srv.Listener.Addr().String()
	_, _, v2 := gitTestRaw(t, addr, "GET", "/git/index/info/refs?service=git-upload-pack", http.Header{"Git-Protocol": {"version=2"}}, nil)
	if !strings.Contains(v2, "version 2") {
		t.Fatalf("Git-Protocol: version=2 did not select protocol v2: %q", v2)
	}
	_, _, got := gitTestRaw(t, addr, "GET", "/git/index/info/refs?service=git-upload-pack", http.Header{"Git_Protocol": {"version=2"}}, nil)
	if strings.Contains(got, "version 2") || !strings.Contains(got, "refs/heads/main") {
		t.Errorf("Git_Protocol reached git: answer %q, want a protocol v0 advertisement", got)
	}
}

// Slow clients never lock others out of the index: 16 requests that
// trickle their body and 16 that never read a (large) answer are held open
// while `git ls-remote` runs; it answers at once, not after their
// timeouts.
func TestGitSlowClientsDoNotLockOut(t *testing.T) {
	src, err := testupstream.DefaultIndexSource()
	if err != nil {
		t.Fatal(err)
	}
	env := newGitTestEnvFrom(t, src, true) // a real pack is larger than socket buffers
	addr := env.srv.Listener.Addr().String()
	head := strings.Fields(testsupport.Git(t, "", "ls-remote", env.url, "refs/heads/main"))[0]
	want := "0032want " + head + "\n00000009done\n"

	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	for i := range 2 * maxGitBackends {
		conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		trickle := i%2 == 0
		length := len(want)
		if trickle {
			length = 1 << 20 // announced, never sent
		}
		fmt.Fprintf(conn, "POST /git/index/git-upload-pack HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-git-upload-pack-request\r\nContent-Length: %d\r\n\r\n", addr, length)
		if !trickle {
			io.WriteString(conn, want) // and then never read the pack
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for range 300 { // at most a minute
				select {
				case <-stop:
					return
				case <-tick.C:
					if trickle {
						conn.Write([]byte("0"))
					}
				}
			}
		}()
	}
	time.Sleep(time.Second) // let them all reach the server
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", "ls-remote", env.url)
	cmd.Env = testsupport.GitEnv(t.TempDir())
	cmd.WaitDelay = 5 * time.Second // git's helper children hold the pipes
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err != nil || !strings.Contains(string(out), head) {
		t.Fatalf("git ls-remote with %d slow clients held open: %v after %v\n%s", 2*maxGitBackends, err, took, out)
	}
	t.Logf("git ls-remote with %d trickling bodies and %d stalled readers held open: %v", maxGitBackends, maxGitBackends, took)
}

// Answers held for clients that have not read them are bounded: over the
// limit, new requests get 503 (before any git runs) until they drain.
func TestGitSpoolBudget(t *testing.T) {
	t.Parallel()
	env := newGitTestEnv(t, false)
	h := env.srv.Config.Handler.(*gitHandler)
	addr := env.srv.Listener.Addr().String()
	h.spooled.Store(h.maxSpool + 1) // clients sitting on a gigabyte of answers
	status, hdr, body := gitTestRaw(t, addr, "GET", "/git/index/info/refs?service=git-upload-pack", nil, nil)
	if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || !strings.Contains(body, "busy") {
		t.Errorf("over the spool budget: %d %q, Retry-After %q; want 503 busy with Retry-After", status, body, hdr.Get("Retry-After"))
	}
	h.spooled.Store(0)
	if status, _, body := gitTestRaw(t, addr, "GET", "/git/index/info/refs?service=git-upload-pack", nil, nil); status != http.StatusOK {
		t.Errorf("under the budget: %d %q", status, body)
	}
	// Served answers are not counted once sent.
	testsupport.Git(t, "", "ls-remote", env.url)
	if n := h.spooled.Load(); n != 0 {
		t.Errorf("%d bytes still counted as held after the answers went out", n)
	}
}
