package indexsync

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"moonbit-registry/internal/testupstream"
)

// testLogger sends a mirror's logs to t.Logf, and drops them once the test
// has finished (a detached sync may still log).
func testLogger(t testing.TB) zerolog.Logger {
	var done atomic.Bool
	t.Cleanup(func() { done.Store(true) })
	w := zerolog.ConsoleWriter{Out: logFunc(func(p []byte) {
		if !done.Load() {
			t.Log(strings.TrimRight(string(p), "\n"))
		}
	}), NoColor: true}
	return zerolog.New(w).Level(zerolog.DebugLevel).With().Timestamp().Logger()
}

type logFunc func(p []byte)

func (f logFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }

// smallIndex writes a tiny index tree (nested and non-ASCII names
// included) and returns its directory.
func smallIndex(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"user/alice/foo.index": `{"name": "alice/foo", "version": "0.1.0", "checksum": "` + sum("a") + `"}
{"name": "alice/foo", "version": "0.2.0", "deps": {"bob/lib/nested": "0.1.0"}, "checksum": "` + sum("b") + `"}
`,
		"user/bob/lib/nested.index": `{"name": "bob/lib/nested", "version": "0.1.0", "checksum": "` + sum("c") + `"}
`,
		"user/illusory0x0/🐫.index": `{"name": "illusory0x0/🐫", "version": "0.0.1", "checksum": "` + sum("d") + `"}
`,
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

// sum is a fake but well-formed checksum derived from s.
func sum(s string) string { return strings.Repeat(s[:1], 64) }

// realIndex is the project's snapshot of the real index.
func realIndex(t testing.TB) string {
	t.Helper()
	src, err := testupstream.DefaultIndexSource()
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func startUpstream(t testing.TB, src string) *testupstream.Upstream {
	t.Helper()
	return testupstream.Start(t, testupstream.Options{IndexSource: src})
}

// newTestMirror makes a mirror in a fresh directory following url.
func newTestMirror(t testing.TB, url string, tweak func(*Options)) *Mirror {
	t.Helper()
	opts := Options{
		Dir:                filepath.Join(t.TempDir(), "data", "index"),
		UpstreamURL:        url,
		GitTimeout:         30 * time.Second,
		RefreshMinInterval: time.Hour,
		Logger:             testLogger(t),
	}
	if tweak != nil {
		tweak(&opts)
	}
	m, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

// countGit records how many times each git subcommand ran.
type countGit struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *countGit) hook(args []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[args[0]]++
}

func (c *countGit) get(sub string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[sub]
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
