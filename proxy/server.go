// Package proxy is the HTTP server that moon clients talk to: it serves the
// index mirror over git smart HTTP, package archives from the cache, and
// passes symbols, assets and API calls through to upstream.
package proxy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// DefaultShutdownTimeout bounds the drain of in-flight requests when
// Options.ShutdownTimeout is zero (and is server.shutdown_timeout's default).
const DefaultShutdownTimeout = 30 * time.Second

// Options configures a Server. Zero timeouts mean "no limit" except where
// noted.
type Options struct {
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// ShutdownTimeout bounds how long in-flight requests may drain after a
	// shutdown signal; 0 means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// DrainDelay is how long the server keeps accepting requests after the
	// shutdown signal, with /readyz answering 503, before it stops
	// accepting; 0 stops at once.
	DrainDelay time.Duration

	// Index is served at /git/index over git smart HTTP, and /readyz waits
	// for it; nil answers 503 there.
	Index Index
	// FirstSyncWait is how long a git request that arrives before the
	// index's first sync waits for it before it is answered 503.
	FirstSyncWait time.Duration

	// Archives serves /user/... package archives (a *cache.Cache); nil
	// answers 503.
	Archives Archives
	// RedirectArchives answers archive requests with a redirect to a
	// signed URL of the store, when the store can give one (S3), instead
	// of sending the bytes.
	RedirectArchives bool
	// Passthrough serves /symbols.zip, /assets/, /api/v0/ and every other
	// path not named above (see NewPassthrough); nil answers 503.
	Passthrough http.Handler

	// Web serves the pages for people: / and /-/...; nil leaves / a 404.
	Web http.Handler

	// Auth, when it has tokens or users, makes every route but /healthz
	// answer 401 to requests without valid credentials.
	Auth Auth

	// Publisher takes private modules at /-/api/ (see publish.go), from
	// clients with a token whose digest is in PublishTokens; nil answers
	// 403 there.
	Publisher     Publisher
	PublishTokens [][sha256.Size]byte

	// Metrics, if set, counts every request and is served at /metrics.
	Metrics *Metrics

	// AccessLog, if set, takes the one line per request (a buffered one:
	// they are many); otherwise Logger does.
	AccessLog *zerolog.Logger

	Logger zerolog.Logger
}

// Server routes requests to the index, archive and pass-through handlers.
type Server struct {
	opts     Options
	log      zerolog.Logger
	handler  http.Handler
	stopping atomic.Bool
}

// New builds a Server; it does not listen until Serve is called.
func New(opts Options) *Server {
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	s := &Server{opts: opts, log: opts.Logger}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	if opts.Metrics != nil {
		mux.Handle("GET /metrics", opts.Metrics.handler())
	}
	mux.Handle("/git/index/", newGitHandler(opts.Index, opts.FirstSyncWait, s.log))
	// /user/ is archivesFirst's, before the mux.
	archives := newArchiveHandler(opts.Archives, opts.Auth.enabled(), opts.RedirectArchives, s.log)
	// symbols.zip, assets, the API, and whatever else a client asks of its
	// download base (newer clients send every immutable artifact there).
	mux.Handle("/", passthroughOrUnavailable(opts.Passthrough))
	if opts.Web != nil {
		mux.Handle("GET /{$}", opts.Web)
		mux.Handle("/-/", opts.Web)
	}
	s.handler = s.accessLog(s.routePublish(s.requireAuth(archivesFirst(archives, mux))))
	return s
}

// archivesFirst sends archive requests, nearly all of a registry's
// traffic, straight to their handler and the rest to the mux: matching
// the mux's patterns cost a hit a few percent of its CPU. The one
// difference: the mux would redirect an unclean path ("/user/a/../b") to
// its clean form, the archive handler refuses it as a bad archive path.
func archivesFirst(archives, mux http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/user/") {
			archives.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// Handler returns the server's routes with access logging, for tests and for
// embedding.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve accepts connections on ln until ctx is cancelled, then reports not
// ready for DrainDelay while still serving, stops accepting, lets in-flight
// requests finish for at most ShutdownTimeout, and returns. A nil error
// means a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		ReadTimeout:       s.opts.ReadTimeout,
		WriteTimeout:      s.opts.WriteTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info().Str("addr", ln.Addr().String()).Msg("listening")

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.stopping.Store(true)
	if s.opts.DrainDelay > 0 {
		s.log.Info().Dur("drain_delay_ms", s.opts.DrainDelay).Msg("shutting down: not ready, still serving until the drain delay ends")
		select {
		case <-time.After(s.opts.DrainDelay):
		case err := <-errc:
			return fmt.Errorf("serve: %w", err)
		}
	}
	s.log.Info().Dur("timeout_ms", s.opts.ShutdownTimeout).Msg("shutting down, draining in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	if s.stopping.Load() {
		probeAnswer(w, http.StatusServiceUnavailable, "shutting down")
		return
	}
	probeAnswer(w, http.StatusOK, "ok")
}

// readyz answers 200 when the server can serve clients, 503 with the reason
// otherwise, for load balancers and for tests that wait for the first sync.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.stopping.Load() {
		probeAnswer(w, http.StatusServiceUnavailable, "shutting down")
		return
	}
	if err := s.ready(r.Context()); err != nil {
		probeAnswer(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
		return
	}
	probeAnswer(w, http.StatusOK, "ready")
}

// ready is nil when the index can be served (in a fleet: at the fleet's
// tip) and the archive store takes writes; it backs /readyz and must be
// cheap. Parts not configured (tests)
// are not checked.
func (s *Server) ready(ctx context.Context) error {
	if s.opts.Index != nil {
		if err := s.opts.Index.Ready(); err != nil {
			return err
		}
		// A replica of a fleet must have the fleet's index tip (one read of
		// it when it has; a catch-up when it has not).
		if c, ok := s.opts.Index.(catcherUp); ok {
			if err := c.CatchUp(ctx); err != nil {
				return err
			}
		}
	}
	if s.opts.Archives != nil {
		return s.opts.Archives.Ping(ctx)
	}
	return nil
}

// probeAnswer writes a health probe's short, never-cached plain-text answer.
func probeAnswer(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	io.WriteString(w, msg+"\n")
}

// requestNote carries what a handler learned about a request (so far only the
// cache outcome) back to the access log.
type requestNote struct{ cache string }

type noteKey struct{}

// noteCache records the cache outcome of a request for the access log:
// "hit", "miss", "stale" or "bypass".
func noteCache(r *http.Request, outcome string) {
	if n, ok := r.Context().Value(noteKey{}).(*requestNote); ok {
		n.cache = outcome
	}
}

// accessLog logs one line per request: method, path, status, bytes,
// duration and cache outcome.
func (s *Server) accessLog(next http.Handler) http.Handler {
	access := s.log
	if s.opts.AccessLog != nil {
		access = *s.opts.AccessLog
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		note := &requestNote{cache: "bypass"}
		rw := &recordingWriter{ResponseWriter: w, status: http.StatusOK}
		// A response cut short on purpose (http.ErrAbortHandler: a
		// streamed archive that failed its check) is logged too.
		defer func() {
			p := recover()
			took := time.Since(start)
			if s.opts.Metrics != nil {
				s.opts.Metrics.observe(r, rw.status, rw.bytes, took, note.cache)
			}
			access.Info().
				Str("method", r.Method).
				Str("path", r.URL.EscapedPath()).
				Int("status", rw.status).
				Int64("bytes", rw.bytes).
				Dur("duration_ms", took).
				Str("cache", note.cache).
				Bool("aborted", p != nil).
				Msg("request")
			if p != nil {
				panic(p)
			}
		}()
		next.ServeHTTP(rw, r.WithContext(context.WithValue(r.Context(), noteKey{}, note)))
	})
}

// recordingWriter counts the status and body bytes of a response. It keeps
// io.ReaderFrom (so file bodies still go out via sendfile) and exposes the
// wrapped writer to http.ResponseController (Flush for streaming git).
type recordingWriter struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (w *recordingWriter) WriteHeader(code int) {
	if !w.wroteHeader && code >= 200 {
		w.status = code
		w.wroteHeader = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	w.wroteHeader = true
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *recordingWriter) ReadFrom(r io.Reader) (int64, error) {
	w.wroteHeader = true
	n, err := io.Copy(w.ResponseWriter, r)
	w.bytes += n
	return n, err
}

func (w *recordingWriter) Flush() {
	w.wroteHeader = true
	http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
