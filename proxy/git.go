package proxy

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"moonbit-registry/internal/spool"

	"github.com/rs/zerolog"
)

// Routes of the index repository. Only the two smart-HTTP upload-pack
// endpoints reach git; everything else under gitPrefix is answered here.
const (
	gitPrefix      = "/git/index"
	gitInfoRefs    = gitPrefix + "/info/refs"
	gitUploadPack  = gitPrefix + "/git-upload-pack"
	gitReceivePack = gitPrefix + "/git-receive-pack"
)

const (
	// maxGitRequestBody bounds an upload-pack request after gzip
	// decompression. A negotiation lists wants and haves; even a client
	// with a long history of the index sends far less.
	maxGitRequestBody = 10 << 20
	// maxGitBackends bounds concurrent git http-backend processes (each
	// may start pack-objects), so a burst of clones cannot exhaust the
	// machine; further requests wait for a slot.
	maxGitBackends = 16
	// maxGitSpooled bounds the git answers held for clients that have not
	// read them yet (spool files, in $TMPDIR): beyond it, new requests are
	// answered 503 until clients drain what they asked for.
	maxGitSpooled = 1 << 30
	// maxGitProtocolLen bounds the Git-Protocol header passed to git.
	maxGitProtocolLen = 256
	// gitWriteTimeout bounds sending one git answer to the client; a whole
	// clone of the index takes seconds.
	gitWriteTimeout = 10 * time.Minute
	// gitBodyTimeout bounds reading an upload-pack request body, which a
	// client sends at once: a trickle is cut off, and no git runs for it.
	gitBodyTimeout = 30 * time.Second
)

// gitHandler serves the index mirror read-only over git smart HTTP by
// running `git http-backend` as a CGI program per request.
type gitHandler struct {
	index     Index
	firstWait time.Duration
	gitPath   string
	gitErr    error // set when git cannot be found; every request fails
	log       zerolog.Logger
	slots     chan struct{}
	spooled   atomic.Int64 // bytes of answers not yet sent
	maxSpool  int64
}

// Index is the package index the server serves at /git/index: the mirror
// of upstream (indexsync.Mirror) or anything else that keeps a git work
// tree of index files, such as an index composed of upstream and private
// modules.
type Index interface {
	// Repository is the work tree to serve (the directory holding .git).
	Repository() string
	// Ready is nil when the repository can be served, else why not.
	Ready() error
}

// readyWaiter is an Index that can tell when its first sync is done.
type readyWaiter interface {
	WaitReady(ctx context.Context) error
}

// freshener is an Index that may look at upstream before a client is
// answered (indexsync.Mirror with index.check_interval).
type freshener interface {
	Freshen(ctx context.Context)
}

// catcherUp is an Index that is one of several replicas and must catch up
// with the others before answering (indexsync.Mirror in a fleet).
type catcherUp interface {
	CatchUp(ctx context.Context) error
}

// newGitHandler serves index at /git/index over git smart HTTP; a nil
// index answers 503. A request that arrives before the index's first sync
// waits for it up to firstWait (if the index can say when it is done). The
// request path arrives unstripped.
func newGitHandler(index Index, firstWait time.Duration, log zerolog.Logger) http.Handler {
	h := &gitHandler{
		index:     index,
		firstWait: firstWait,
		log:       log.With().Str("component", "git-http-backend").Logger(),
		slots:     make(chan struct{}, maxGitBackends),
		maxSpool:  maxGitSpooled,
	}
	h.gitPath, h.gitErr = exec.LookPath("git")
	return h
}

func (h *gitHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	// Exact paths only: no prefix matching, so "..", encoded slashes,
	// dumb-HTTP paths (HEAD, objects/..., config) never reach git or the
	// filesystem.
	switch r.URL.Path {
	case gitInfoRefs:
		if r.Method == http.MethodPost {
			methodNotAllowed(w, "GET, HEAD")
			return
		}
		switch services := r.URL.Query()["service"]; {
		case len(services) == 1 && services[0] == "git-upload-pack":
			// A clone or pull starts here: the moment to bring in what
			// upstream published since it was last looked at.
			if f, ok := h.index.(freshener); ok {
				f.Freshen(r.Context())
			}
			h.serveBackend(w, r, gitInfoRefs, "service=git-upload-pack")
		case len(services) == 1 && services[0] == "git-receive-pack":
			http.Error(w, "the index mirror is read-only", http.StatusForbidden)
		default:
			// Dumb HTTP (no service) is not offered.
			http.Error(w, "not found: only git smart HTTP is served", http.StatusNotFound)
		}
	case gitUploadPack:
		if r.Method != http.MethodPost {
			methodNotAllowed(w, "POST")
			return
		}
		h.serveBackend(w, r, gitUploadPack, "")
	case gitReceivePack:
		http.Error(w, "the index mirror is read-only", http.StatusForbidden)
	default:
		http.NotFound(w, r)
	}
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
}

// serveBackend runs git http-backend for one of the two upload-pack
// endpoints; path and query are the canonical ones, never the client's.
func (h *gitHandler) serveBackend(w http.ResponseWriter, r *http.Request, path, query string) {
	if h.gitErr != nil {
		h.log.Error().Err(h.gitErr).Msg("cannot serve the index")
		http.Error(w, "index not available", http.StatusInternalServerError)
		return
	}
	repoDir, err := h.repository(r.Context())
	if err != nil {
		// The cause (upstream's URL, git's words) is for the log and
		// /readyz, not for every client.
		h.log.Warn().Err(err).Msg("index not served")
		w.Header().Set("Retry-After", "10")
		http.Error(w, "not ready: the index is not available yet; try again later", http.StatusServiceUnavailable)
		return
	}

	// The request body is read in full (bounded in time and size, spooled
	// so memory stays bounded) before a backend slot is taken, and git's
	// answer is spooled at git's speed and the slot released before the
	// client reads it: slow or stalled clients, however many, never hold
	// a slot.
	r2 := r.Clone(r.Context())
	r2.URL.Path, r2.URL.RawPath, r2.URL.RawQuery = path, "", query
	r2.Header.Del("Git-Protocol") // passed as GIT_PROTOCOL below, checked
	// CGI turns "Git-Foo" and "Git_Foo" into one variable; like nginx, do
	// not pass names with underscores at all.
	for k := range r2.Header {
		if strings.Contains(k, "_") {
			r2.Header.Del(k)
		}
	}
	r2.Body, r2.ContentLength = http.NoBody, 0
	if r.Method == http.MethodPost {
		body, status, err := readGitBody(w, r)
		if err != nil {
			http.Error(w, err.Error(), status)
			return
		}
		defer body.Close()
		rd, err := body.Reader()
		if err != nil {
			h.log.Error().Err(err).Msg("reading a spooled git request")
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		r2.Body = io.NopCloser(rd)
		// net/http/cgi refuses chunked bodies (git sends large
		// negotiations chunked) and passes CONTENT_LENGTH only when
		// known: hand it the decompressed body with its length.
		r2.ContentLength = body.Len()
		r2.TransferEncoding = nil
		r2.Header.Del("Content-Encoding")
		r2.Header.Del("Content-Length")
	}

	if h.spooled.Load() > h.maxSpool {
		h.log.Warn().Int64("spooled_bytes", h.spooled.Load()).Msg("git answers waiting for slow clients are over the limit; refusing new requests for now")
		w.Header().Set("Retry-After", "10")
		http.Error(w, "busy: too many answers waiting for slow clients; try again later", http.StatusServiceUnavailable)
		return
	}
	select {
	case h.slots <- struct{}{}:
	case <-r.Context().Done():
		return
	}
	answer := newSpooledResponse()
	defer answer.body.Close()
	h.runBackend(answer, r2, repoDir, path, r.Header.Get("Git-Protocol"))
	<-h.slots
	held := answer.body.Len()
	h.spooled.Add(held)
	defer h.spooled.Add(-held)
	if answer.err != nil {
		// A cut answer must not go out as a complete one.
		h.log.Error().Err(answer.err).Str("path", path).Msg("git answer could not be spooled")
		http.Error(w, "internal error (see the server log)", http.StatusInternalServerError)
		return
	}

	// A client that stops reading must not keep the connection for ever
	// (the server's write timeout is off by default for large archives).
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(gitWriteTimeout))
	if err := answer.sendTo(w); err != nil {
		h.log.Debug().Err(err).Str("path", path).Msg("git answer not delivered")
	}
}

// runBackend runs git http-backend for one request, its answer going to w.
func (h *gitHandler) runBackend(w http.ResponseWriter, r2 *http.Request, repoDir, path, gitProto string) {
	logw := &backendLog{log: h.log, path: path}
	env := []string{
		"GIT_PROJECT_ROOT=" + repoDir,
		"GIT_HTTP_EXPORT_ALL=1",
		// Neither the user's nor the system's git config may change what
		// is served (or enable receive-pack).
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=" + os.DevNull,
		"HOME=" + os.DevNull,
		"GIT_TERMINAL_PROMPT=0",
	}
	if p := gitProtocol(gitProto); p != "" {
		env = append(env, "GIT_PROTOCOL="+p)
	}
	backend := &cgi.Handler{
		Path: h.gitPath,
		Args: []string{"http-backend"},
		// PATH_INFO becomes "/info/refs" or "/git-upload-pack", so the
		// repository is GIT_PROJECT_ROOT itself.
		Root:   gitPrefix,
		Dir:    repoDir,
		Env:    env,
		Logger: log.New(logw, "", 0),
		Stderr: logw,
	}
	backend.ServeHTTP(w, r2)
}

// repository is the absolute work tree to serve, or why there is none.
func (h *gitHandler) repository(ctx context.Context) (string, error) {
	if h.index == nil {
		return "", errors.New("no index configured")
	}
	if err := h.index.Ready(); err != nil {
		w, ok := h.index.(readyWaiter)
		if !ok || h.firstWait <= 0 {
			return "", err
		}
		wctx, cancel := context.WithTimeout(ctx, h.firstWait)
		defer cancel()
		if w.WaitReady(wctx) != nil {
			return "", err
		}
		if err := h.index.Ready(); err != nil {
			return "", err
		}
	}
	if c, ok := h.index.(catcherUp); ok {
		if err := c.CatchUp(ctx); err != nil {
			return "", fmt.Errorf("this replica cannot catch up with the fleet's index: %w", err)
		}
	}
	return filepath.Abs(h.index.Repository())
}

// readGitBody reads a POST body, decompressing gzip, up to
// maxGitRequestBody bytes and within gitBodyTimeout, into a spool. On error
// it also returns the status to send.
func readGitBody(w http.ResponseWriter, r *http.Request) (*spool.Spool, int, error) {
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(gitBodyTimeout))
	// A compressed body is never much larger than the data in it.
	var body io.Reader = http.MaxBytesReader(w, r.Body, maxGitRequestBody+64<<10)
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("bad gzip request body: %w", err)
		}
		defer zr.Close()
		body = zr
	default:
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("unsupported Content-Encoding %q", enc)
	}
	s := &spool.Spool{Limit: maxGitRequestBody}
	_, err := io.Copy(s, body)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig) || errors.Is(err, spool.ErrFull):
		s.Close()
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("request body larger than %d bytes", maxGitRequestBody)
	case err != nil:
		s.Close()
		return nil, http.StatusBadRequest, fmt.Errorf("read request body: %w", err)
	}
	return s, 0, nil
}

// gitProtocol returns the Git-Protocol header if it looks like what git
// sends ("version=2", colon-separated key=value), else "".
func gitProtocol(v string) string {
	if v == "" || len(v) > maxGitProtocolLen {
		return ""
	}
	for _, c := range v {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("=:._-", c)) {
			return ""
		}
	}
	return v
}

// backendLog turns git http-backend's stderr (and net/http/cgi's own
// messages) into log events.
type backendLog struct {
	log  zerolog.Logger
	path string
}

func (b *backendLog) Write(p []byte) (int, error) {
	if msg := strings.TrimSpace(string(p)); msg != "" {
		b.log.Warn().Str("path", b.path).Str("stderr", msg).Msg("git http-backend")
	}
	return len(p), nil
}
