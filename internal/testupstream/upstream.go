package testupstream

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// AllVersions as a [ModuleVersion]'s Version selects every version of the
// module in the index.
const AllVersions = "*"

// ModuleVersion names one published version of a module, such as
// {Module: "moonbitlang/x", Version: "0.4.6"}.
type ModuleVersion struct {
	Module  string
	Version string
}

// EveryVersion selects every version of module for [Options.Archives].
func EveryVersion(module string) ModuleVersion {
	return ModuleVersion{Module: module, Version: AllVersions}
}

// ParseModuleVersion parses "owner/name@version", or "owner/name" for every
// version of the module.
func ParseModuleVersion(s string) (ModuleVersion, error) {
	s = strings.TrimSpace(s)
	module, version, found := strings.Cut(s, "@")
	if !found || version == "" {
		version = AllVersions
	}
	if err := validModule(module); err != nil {
		return ModuleVersion{}, fmt.Errorf("parse %q: %w", s, err)
	}
	return ModuleVersion{Module: module, Version: version}, nil
}

// Options configures an [Upstream]. The zero value is usable from a test
// inside this repository.
type Options struct {
	// WorkDir holds the served git repository and git's HOME. Default: a
	// new temporary directory, removed by Close. A given WorkDir is kept.
	WorkDir string
	// IndexSource is the index tree to serve (the directory holding
	// user/). Default: testdata/mooncakes-index at the root
	// of the module that contains the working directory. It is only read.
	IndexSource string
	// Listen is the address to listen on; the host must be a loopback IP.
	// Default: 127.0.0.1:0 (a free port, kept across Down and Up).
	Listen string
	// Archives selects the module versions to build and serve zips for;
	// see [EveryVersion]. Their checksums are rewritten in the served index.
	Archives []ModuleVersion
	// AllArchives builds a zip for every version in the index (6,548 in the
	// real snapshot); keep ArchiveSize small with it.
	AllArchives bool
	// ArchiveSize pads every built zip to exactly this many bytes when it
	// is larger than the unpadded zip (a few hundred bytes). 0: no padding.
	ArchiveSize int
	// RequireUserAgent makes every route answer 403 to requests without a
	// User-Agent, as the real upstream's firewall does.
	RequireUserAgent bool
	// Logf receives diagnostics (git http-backend's stderr, server
	// errors). Default: discarded; Start uses t.Logf.
	Logf func(format string, args ...any)
}

// Upstream is a running test upstream: it owns the HTTP server (its
// address, Down, Up and Close), counts requests and routes them to its
// parts, which tests drive through its fields. New sets the fields; do not
// change them. Its methods, and its parts', are safe for concurrent use.
type Upstream struct {
	// Index is the served git index, which tests publish into.
	Index *Index
	// Downloads holds the archives, symbols and assets served.
	Downloads *Downloads
	// Faults injects errors, hangs and broken bodies into the answers.
	Faults *Faults

	api        api // answers /api/v0/ from Index
	opts       Options
	workDir    string
	ownWorkDir bool

	countMu sync.Mutex
	counts  map[string]int

	srvMu    sync.Mutex
	addr     string // host:port, fixed after the first listen
	srv      *http.Server
	stop     chan struct{} // closed on Down and Close, to release hung requests
	down     bool
	closed   bool
	inflight sync.WaitGroup // running handlers
	serveWG  sync.WaitGroup // Serve loops

	logOff atomic.Bool // set once Close is done: Logf may be a finished test's

	sent atomic.Int64 // bytes written to every connection, headers included
}

// BytesSent is how many bytes the upstream has written to its connections
// so far (headers and bodies of every route): what clients cost it.
func (u *Upstream) BytesSent() int64 { return u.sent.Load() }

// countingListener counts what its connections write into sent.
type countingListener struct {
	net.Listener
	sent *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, sent: l.sent}, nil
}

type countingConn struct {
	net.Conn
	sent *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.sent.Add(int64(n))
	return n, err
}

// SetLinger reaches the TCP connection beneath, so ResetMidBody still
// resets (RST) rather than closes.
func (c countingConn) SetLinger(sec int) error {
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		return tc.SetLinger(sec)
	}
	return nil
}

// Start starts an upstream for a test or benchmark, fails it on error and
// closes the upstream in t.Cleanup.
func Start(t testing.TB, opts Options) *Upstream {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	u, err := New(t.Context(), opts)
	if err != nil {
		t.Fatalf("start test upstream: %v", err)
	}
	t.Cleanup(func() {
		if err := u.Close(); err != nil {
			t.Errorf("close test upstream: %v", err)
		}
	})
	return u
}

// New builds the index repository and archives and starts serving. ctx
// bounds the setup only. Call Close when done.
func New(ctx context.Context, opts Options) (*Upstream, error) {
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if err := checkLoopback(opts.Listen); err != nil {
		return nil, err
	}
	if opts.IndexSource == "" {
		src, err := DefaultIndexSource()
		if err != nil {
			return nil, err
		}
		opts.IndexSource = src
	}
	downloads, err := newDownloads(opts.ArchiveSize)
	if err != nil {
		return nil, err
	}
	u := &Upstream{
		Downloads: downloads,
		opts:      opts,
		workDir:   opts.WorkDir,
		counts:    map[string]int{},
	}
	u.Faults = &Faults{logf: u.logf}
	if u.workDir == "" {
		dir, err := os.MkdirTemp("", "testupstream-")
		if err != nil {
			return nil, fmt.Errorf("work dir: %w", err)
		}
		u.workDir, u.ownWorkDir = dir, true
	}
	if err := u.setup(ctx); err != nil {
		if u.ownWorkDir {
			_ = os.RemoveAll(u.workDir)
		}
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		if u.ownWorkDir {
			_ = os.RemoveAll(u.workDir)
		}
		return nil, fmt.Errorf("listen: %w", err)
	}
	u.addr = ln.Addr().String()
	u.srvMu.Lock()
	u.serve(ln)
	u.srvMu.Unlock()
	return u, nil
}

// setup makes the work dir absolute and builds the index, and the
// archives it selects, in it.
func (u *Upstream) setup(ctx context.Context) error {
	workDir, err := filepath.Abs(u.workDir)
	if err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	u.workDir = workDir
	if u.Index, err = newIndex(ctx, u.opts, workDir, u.Downloads, logWriter{u}); err != nil {
		return err
	}
	u.api = api{index: u.Index}
	return nil
}

// DefaultIndexSource finds testdata/mooncakes-index, the project's copy of
// the real index snapshot, at the root of the Go module containing the
// working directory.
func DefaultIndexSource() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find index source: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			src := filepath.Join(dir, "testdata", "mooncakes-index")
			if _, err := os.Stat(filepath.Join(src, "user")); err != nil {
				return "", fmt.Errorf("find index source: %w", err)
			}
			return src, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find index source: no go.mod above the working directory")
		}
		dir = parent
	}
}

func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("listen address %q: host must be a loopback IP such as 127.0.0.1", addr)
	}
	return nil
}

// serve starts an HTTP server on ln. Callers hold srvMu.
func (u *Upstream) serve(ln net.Listener) {
	srv := &http.Server{
		Handler:           http.HandlerFunc(u.handle),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(logWriter{u}, "http: ", 0),
	}
	u.srv = srv
	u.stop = make(chan struct{})
	u.serveWG.Add(1)
	go func() {
		defer u.serveWG.Done()
		if err := srv.Serve(countingListener{Listener: ln, sent: &u.sent}); err != nil && !errors.Is(err, http.ErrServerClosed) {
			u.logf("serve: %v", err)
		}
	}()
}

// Down stops serving: the listener and every open connection are closed, so
// new connections are refused and hung requests end. Up restores service.
func (u *Upstream) Down() error {
	u.srvMu.Lock()
	defer u.srvMu.Unlock()
	if u.closed {
		return errors.New("testupstream: closed")
	}
	if u.down {
		return nil
	}
	u.down = true
	close(u.stop)
	err := u.srv.Close()
	u.srv = nil
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("down: %w", err)
	}
	return nil
}

// Up listens again on the same address after Down, so URLs stay valid.
func (u *Upstream) Up() error {
	u.srvMu.Lock()
	defer u.srvMu.Unlock()
	if u.closed {
		return errors.New("testupstream: closed")
	}
	if !u.down {
		return nil
	}
	ln, err := net.Listen("tcp", u.addr)
	if err != nil {
		return fmt.Errorf("up: %w", err)
	}
	u.down = false
	u.serve(ln)
	return nil
}

// Close stops the server, waits for every request handler to return and
// removes the work dir if New created it. It is safe to call twice.
func (u *Upstream) Close() error {
	u.srvMu.Lock()
	if u.closed {
		u.srvMu.Unlock()
		return nil
	}
	u.closed = true
	var err error
	if !u.down {
		close(u.stop)
		err = u.srv.Close()
		u.srv = nil
	}
	u.srvMu.Unlock()
	u.serveWG.Wait()
	u.inflight.Wait()
	u.logOff.Store(true)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		err = fmt.Errorf("close: %w", err)
	} else {
		err = nil
	}
	if u.ownWorkDir {
		if rerr := os.RemoveAll(u.workDir); rerr != nil && err == nil {
			err = fmt.Errorf("close: %w", rerr)
		}
	}
	return err
}

// URL is the base URL, e.g. http://127.0.0.1:PORT (no trailing slash), as
// MOONCAKES_REGISTRY would be set.
func (u *Upstream) URL() string { return "http://" + u.addr }

// IndexURL is the git URL of the index: URL()/git/index.
func (u *Upstream) IndexURL() string { return u.URL() + "/git/index" }

// DownloadURL is the base for archives and symbols; the same as URL.
func (u *Upstream) DownloadURL() string { return u.URL() }

// ArchiveURL is the plain-slash URL of module@version's zip,
// DownloadURL()/user/<owner>/<rest>/<version>.zip. Current clients send the
// one-segment form (%2F between parts); both are served.
func (u *Upstream) ArchiveURL(module, version string) string {
	parts := strings.Split(module+"/"+version+".zip", "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return u.DownloadURL() + "/user/" + strings.Join(parts, "/")
}

// Addr is the listen address, host:port.
func (u *Upstream) Addr() string { return u.addr }

// Count is the number of requests received for path (percent-decoded, no
// query), whatever their outcome, faults included.
func (u *Upstream) Count(path string) int {
	u.countMu.Lock()
	defer u.countMu.Unlock()
	return u.counts[path]
}

// Counts returns a copy of all request counts by path.
func (u *Upstream) Counts() map[string]int {
	u.countMu.Lock()
	defer u.countMu.Unlock()
	out := make(map[string]int, len(u.counts))
	for k, v := range u.counts {
		out[k] = v
	}
	return out
}

// ResetCounts forgets all request counts.
func (u *Upstream) ResetCounts() {
	u.countMu.Lock()
	defer u.countMu.Unlock()
	u.counts = map[string]int{}
}

func (u *Upstream) logf(format string, args ...any) {
	if u.opts.Logf != nil && !u.logOff.Load() {
		u.opts.Logf(format, args...)
	}
}

// logWriter turns writes (from log.Logger or a child's stderr) into Logf
// lines.
type logWriter struct{ u *Upstream }

func (w logWriter) Write(p []byte) (int, error) {
	if s := strings.TrimRight(string(p), "\n"); s != "" {
		w.u.logf("testupstream: %s", s)
	}
	return len(p), nil
}
