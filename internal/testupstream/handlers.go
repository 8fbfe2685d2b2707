package testupstream

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
)

// handle is the server's entry point: it tracks the request for Close,
// counts it, applies faults and routes it.
func (u *Upstream) handle(w http.ResponseWriter, r *http.Request) {
	u.srvMu.Lock()
	if u.closed {
		u.srvMu.Unlock()
		http.Error(w, "testupstream: closed", http.StatusServiceUnavailable)
		return
	}
	u.inflight.Add(1)
	stop := u.stop
	u.srvMu.Unlock()
	defer u.inflight.Done()

	u.countMu.Lock()
	u.counts[r.URL.Path]++
	u.countMu.Unlock()

	if u.opts.RequireUserAgent && r.UserAgent() == "" {
		http.Error(w, "forbidden: no user agent", http.StatusForbidden)
		return
	}
	routes := http.HandlerFunc(u.route)
	if f, ok := u.Faults.take(r.URL.Path); ok {
		u.Faults.serve(w, r, f, stop, routes)
		return
	}
	routes.ServeHTTP(w, r)
}

// route dispatches on the percent-decoded path. It does not use ServeMux,
// which would clean or redirect the paths the client sends.
func (u *Upstream) route(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/git/index/"):
		u.Index.git.ServeHTTP(w, r)
	case p == "/symbols.zip":
		u.Downloads.serveSymbols(w, r)
	case strings.HasPrefix(p, "/user/"):
		u.Downloads.serveArchive(w, r)
	case strings.HasPrefix(p, "/assets/"):
		u.Downloads.serveFile(w, r)
	case p == "/api/v0/search":
		u.api.search(w, r)
	case strings.HasPrefix(p, "/api/v0/modules/"):
		// The same answer as /api/v0/manifest/.
		u.api.manifest(w, r, strings.TrimPrefix(p, "/api/v0/modules/"))
	case strings.HasPrefix(p, "/api/v0/manifest/"):
		u.api.manifest(w, r, strings.TrimPrefix(p, "/api/v0/manifest/"))
	case strings.HasPrefix(p, "/api/v0/user/"):
		u.api.user(w, r, strings.TrimPrefix(p, "/api/v0/user/"))
	default:
		u.Downloads.serveFile(w, r) // files set with SetFile; 404 otherwise
	}
}

// getOrHead answers 405 to methods other than GET and HEAD and reports
// whether the request may go on.
func getOrHead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// etag quotes a strong entity tag derived from data.
func etag(data []byte) string {
	s := sha256.Sum256(data)
	return `"` + hex.EncodeToString(s[:16]) + `"`
}
