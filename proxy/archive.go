package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"moonbit-registry/cache"
	"moonbit-registry/module"
	"moonbit-registry/store"
)

// archiveCacheControl: a published archive never changes, so clients and
// intermediaries may keep it forever. With authentication on, shared caches
// must not: they would hand it to clients without credentials.
const (
	archiveCacheControl        = "public, max-age=31536000, immutable"
	privateArchiveCacheControl = "private, max-age=31536000, immutable"
)

// statusClientClosed is logged when the client left before the answer.
const statusClientClosed = 499

// Archives is what the archive routes need from the cache.
type Archives interface {
	// Get returns the archive, fetching and verifying it on a miss.
	Get(ctx context.Context, mv module.Version) (store.Object, cache.Outcome, error)
	// GetStream is Get that may return a miss as a Stream of the bytes as
	// they arrive, before the download is over.
	GetStream(ctx context.Context, mv module.Version) (store.Object, *cache.Stream, cache.Outcome, error)
	// Checksum is the index checksum of mv, used as the ETag.
	Checksum(ctx context.Context, mv module.Version) (string, bool, error)
	// Ping is nil when the store takes archives (readiness).
	Ping(ctx context.Context) error
}

// newArchiveHandler serves /user/... archives from the cache, fetching them
// from upstream on a miss. Both URL forms are accepted: the one-segment
// form-urlencoded "owner%2Frest%2Fversion.zip" current clients send and the
// plain "owner/rest/version.zip"; module.ParseArchivePath handles both. A nil
// cache answers 503.
func newArchiveHandler(archives Archives, private, redirect bool, log zerolog.Logger) http.Handler {
	cc := archiveCacheControl
	if private {
		cc = privateArchiveCacheControl
	}
	h := &archiveHandler{archives: archives, log: log,
		contentType: []string{"application/zip"}, cacheControl: []string{cc}, acceptRanges: []string{"bytes"}}
	if l, ok := archives.(locator); ok && redirect {
		h.locator = l
	}
	return h
}

// locator is Archives that can send clients to the store itself
// (*cache.Cache over the S3 store).
type locator interface {
	Location(ctx context.Context, mv module.Version) (string, cache.Outcome, error)
}

type archiveHandler struct {
	archives Archives
	locator  locator // set when archives are answered with a redirect
	// Header values, set as they are on every answer (never modified):
	// a hit allocates none for them.
	contentType, cacheControl, acceptRanges []string
	log                                     zerolog.Logger
}

func (h *archiveHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	// The escaped path, so "%2F" inside a segment is still visible to the
	// parser (r.URL.Path has already turned it into "/").
	raw, ok := strings.CutPrefix(r.URL.EscapedPath(), "/user/")
	if !ok {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	mv, err := module.ParseArchivePath(raw)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if h.archives == nil {
		http.Error(w, "archive cache is not configured", http.StatusServiceUnavailable)
		return
	}

	if h.locator != nil {
		if h.redirect(w, r, mv) {
			return
		}
	}
	var (
		obj     store.Object
		stream  *cache.Stream
		outcome cache.Outcome
	)
	plain := streamable(r)
	if plain {
		obj, stream, outcome, err = h.archives.GetStream(r.Context(), mv)
	} else {
		obj, outcome, err = h.archives.Get(r.Context(), mv)
	}
	if outcome != "" {
		noteCache(r, string(outcome))
	}
	if err != nil {
		h.fail(w, r, mv, err)
		return
	}
	if stream != nil {
		h.serveStreaming(w, r, stream)
		return
	}
	defer obj.Close()
	info := obj.Info()

	hdr := w.Header()
	hdr["Content-Type"] = h.contentType
	hdr["Cache-Control"] = h.cacheControl
	// The checksum identifies the bytes exactly, so it is the ETag: the one
	// stored with the archive (Get has checked it against the index), or
	// the index's for an archive stored without one. Without either,
	// Last-Modified (set below) still lets clients revalidate.
	if info.SHA256 != "" {
		hdr.Set("ETag", `"`+info.SHA256+`"`)
	} else if sum, ok, err := h.archives.Checksum(r.Context(), mv); err == nil && ok {
		hdr.Set("ETag", `"`+sum+`"`)
	}
	rs, seekable := obj.(io.ReadSeeker)
	switch {
	case plain:
		// A plain GET, nearly every hit: the whole archive, without
		// ServeContent's probing (two seeks for the size, which the store
		// already knows).
		h.serveWhole(w, info, obj, seekable)
	case seekable:
		// ServeContent handles Range, HEAD, If-None-Match/If-Modified-Since
		// (304) and Content-Length.
		http.ServeContent(w, r, "", info.ModTime, rs)
	default:
		// A store that cannot seek: the whole body, unranged.
		serveStream(w, r, info, obj)
	}
}

// serveWhole answers a plain GET with the whole archive and the headers
// ServeContent would give it; a local file goes out with sendfile.
//
// Corking the headers into the body's first TCP segment (TCP_CORK around
// the answer, as nginx's tcp_nopush) was measured and left out: its two
// setsockopt calls cost more server CPU than the segment they save
// (bench/run.sh hit; the figures are in docs/benchmarks.md).
func (h *archiveHandler) serveWhole(w http.ResponseWriter, info store.Info, body io.Reader, ranges bool) {
	hdr := w.Header()
	// As ServeContent: no date for a zero or Unix-epoch time.
	if !info.ModTime.IsZero() && !info.ModTime.Equal(time.Unix(0, 0)) {
		hdr["Last-Modified"] = []string{info.ModTime.UTC().Format(http.TimeFormat)}
	}
	if ranges {
		hdr["Accept-Ranges"] = h.acceptRanges
	}
	hdr["Content-Length"] = []string{strconv.FormatInt(info.Size, 10)}
	w.WriteHeader(http.StatusOK)
	// CopyN: with the length known, sendfile is one call, not a second
	// one to find the end.
	io.CopyN(w, body, info.Size)
}

// streamable reports whether a miss may be answered while it downloads: a
// plain GET. Ranges, conditional requests and HEAD wait for the whole
// archive and get http.ServeContent's answers.
func streamable(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	// Canonical names, looked up as they are: net/http canonicalized what
	// it read, and Header.Get would canonicalize each again on every hit.
	for _, k := range [...]string{"Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range"} {
		if len(r.Header[k]) > 0 {
			return false
		}
	}
	return true
}

// serveStreaming sends a miss as its bytes arrive from upstream. The
// cache holds the last byte back until the archive is verified and
// stored; when it is not, the connection is cut, so the client sees a
// broken transfer (and retries) instead of a wrong archive.
func (h *archiveHandler) serveStreaming(w http.ResponseWriter, r *http.Request, s *cache.Stream) {
	defer s.Close()
	hdr := w.Header()
	hdr["Content-Type"] = h.contentType
	hdr["Cache-Control"] = h.cacheControl
	if s.SHA256 != "" {
		hdr.Set("ETag", `"`+s.SHA256+`"`)
	}
	if s.Size >= 0 {
		hdr.Set("Content-Length", strconv.FormatInt(s.Size, 10))
	}
	w.WriteHeader(http.StatusOK)
	// The status goes out now: a stream that fails before its first byte
	// must still reach the client as a 200 cut short, not as a connection
	// closed before any answer.
	if err := http.NewResponseController(w).Flush(); err != nil {
		panic(http.ErrAbortHandler)
	}
	// WriteTo sends what has arrived with sendfile where it can (plain
	// HTTP), and flushes; nothing waits in a buffer for more to come.
	if _, err := s.WriteTo(w); err != nil {
		if errors.Is(err, cache.ErrStreamCut) && r.Context().Err() == nil {
			h.log.Warn().Err(err).Msg("streamed archive failed; cutting the response")
		}
		// Whatever broke, the body must not end as if it were whole, as
		// a chunked one would on a return: cut the connection. That the
		// request's context ended does not mean the client is gone (it
		// ends too when a client half-closes its side after the request).
		panic(http.ErrAbortHandler)
	}
}

// redirect answers with a redirect to a signed URL of the store, once the
// archive is there; false when the store gave none (then it is served).
func (h *archiveHandler) redirect(w http.ResponseWriter, r *http.Request, mv module.Version) bool {
	loc, outcome, err := h.locator.Location(r.Context(), mv)
	if outcome != "" {
		noteCache(r, string(outcome))
	}
	if err != nil {
		h.fail(w, r, mv, err)
		return true
	}
	if loc == "" {
		return false
	}
	// The URL expires: nobody may keep this answer.
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, loc, http.StatusTemporaryRedirect)
	return true
}

// fail maps a cache error to a status and a message a person can act on.
func (h *archiveHandler) fail(w http.ResponseWriter, r *http.Request, mv module.Version, err error) {
	status := statusOf(err)
	msg := err.Error()
	switch {
	case r.Context().Err() != nil:
		// The client went away and will not read this; the status is only
		// for the access log (nginx's "client closed request").
		w.WriteHeader(statusClientClosed)
		return
	case errors.Is(err, cache.ErrOffline):
		msg = fmt.Sprintf("archive %s is not cached and this registry is offline by choice (serve --offline): "+
			"add it with `moonbit-registry mirror %s` where upstream is reachable", mv, mv)
	case status == http.StatusGatewayTimeout:
		// Causes name upstream's addresses: they are for the log.
		msg = fmt.Sprintf("archive %s is not cached and upstream is unreachable; try again later", mv)
	case status == http.StatusBadGateway && !errors.Is(err, store.ErrChecksumMismatch):
		msg = fmt.Sprintf("archive %s is not cached and upstream sent no usable answer; try again later", mv)
	case errors.Is(err, store.ErrUnavailable):
		msg = fmt.Sprintf("archive %s cannot be served: the archive store does not answer right now; try again later", mv)
	case errors.Is(err, store.ErrWrite):
		// The details (paths, errno) are for the log, not for clients.
		msg = fmt.Sprintf("archive %s is not cached and the cache cannot store it right now (disk full or not writable); try again later", mv)
	case status == http.StatusInternalServerError:
		msg = fmt.Sprintf("archive %s cannot be served: internal error (see the server log)", mv)
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "10")
	}
	if status >= 500 {
		h.log.Warn().Err(err).Str("archive", mv.String()).Int("status", status).Msg("archive not served")
	}
	http.Error(w, msg, status)
}

// serveStream answers from a store object that cannot seek: the whole body
// with its length and modification time; conditional requests still get
// 304 through the ETag or the date.
func serveStream(w http.ResponseWriter, r *http.Request, info store.Info, body io.Reader) {
	if !info.ModTime.IsZero() {
		w.Header().Set("Last-Modified", info.ModTime.UTC().Format(http.TimeFormat))
	}
	if notModified(r, w.Header().Get("ETag"), info.ModTime) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Length", strconv.FormatInt(info.Size, 10))
	if r.Method == http.MethodHead {
		return
	}
	io.Copy(w, body)
}

// notModified applies If-None-Match, or without it If-Modified-Since.
func notModified(r *http.Request, etag string, mod time.Time) bool {
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		return etagMatches(inm, etag)
	}
	ims, err := http.ParseTime(r.Header.Get("If-Modified-Since"))
	return err == nil && !mod.IsZero() && !mod.Truncate(time.Second).After(ims)
}
