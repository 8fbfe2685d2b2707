package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/rs/zerolog"

	"moonbit-registry/module"
	"moonbit-registry/private"
)

// Publisher takes the team's own modules (a *private.Registry).
type Publisher interface {
	Publish(ctx context.Context, body io.Reader) (private.Published, error)
	SetMarks(ctx context.Context, mv module.Version, m private.Mark) error
}

// The write API for private modules (docs/protocol.md, "Publishing"):
// every route takes "Authorization: Bearer <token>" with a token whose
// digest is in server.publish_tokens, and answers JSON.
const (
	publishPrefix    = "/-/api/"
	publishPath      = publishPrefix + "publish"
	deprecatePath    = publishPrefix + "deprecate"
	yankPath         = publishPrefix + "yank"
	maxMarkBodyBytes = 64 << 10
)

// publishAPI serves the write API; it does its own authentication, by
// publish token, whether or not reading needs credentials.
type publishAPI struct {
	pub    Publisher // nil: no [private] owners
	tokens [][sha256.Size]byte
	log    zerolog.Logger
}

// routePublish sends the write API's paths to it and everything else to
// next (the read routes, behind their own authentication).
func (s *Server) routePublish(next http.Handler) http.Handler {
	api := &publishAPI{pub: s.opts.Publisher, tokens: s.opts.PublishTokens, log: s.log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+publishPath, api.publish)
	mux.HandleFunc("POST "+deprecatePath, api.deprecate)
	mux.HandleFunc("POST "+yankPath, api.yank)
	mux.HandleFunc(publishPrefix, func(w http.ResponseWriter, r *http.Request) {
		api.fail(w, http.StatusNotFound, "no such API route; see docs/protocol.md (POST /-/api/publish, /-/api/deprecate, /-/api/yank)")
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, publishPrefix) {
			next.ServeHTTP(w, r)
			return
		}
		if !api.authorized(w, r) {
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// authorized answers the request itself (401/403) unless it carries a
// publish token and private modules are on.
func (a *publishAPI) authorized(w http.ResponseWriter, r *http.Request) bool {
	if a.pub == nil {
		a.fail(w, http.StatusForbidden, "this registry takes no private modules: set [private] owners in registry.toml")
		return false
	}
	if len(a.tokens) == 0 {
		a.fail(w, http.StatusForbidden, "publishing over HTTP is off: set server.publish_tokens (moonbit-registry auth new-token --publish)")
		return false
	}
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "bearer") || token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="moonbit-registry"`)
		a.fail(w, http.StatusUnauthorized, "a publish token is required: Authorization: Bearer <token> (MOONBIT_REGISTRY_TOKEN for the publish command)")
		return false
	}
	if !tokenMatches(token, a.tokens) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="moonbit-registry", error="invalid_token"`)
		a.fail(w, http.StatusUnauthorized, "this token may not publish: its digest is not in server.publish_tokens")
		return false
	}
	return true
}

func (a *publishAPI) publish(w http.ResponseWriter, r *http.Request) {
	p, err := a.pub.Publish(r.Context(), r.Body)
	if err != nil {
		a.failErr(w, err)
		return
	}
	status := http.StatusCreated
	if p.Existed {
		status = http.StatusOK
	}
	a.log.Info().Str("module", p.Archive.Module).Str("version", p.Archive.Version).Str("checksum", p.Checksum).Bool("existed", p.Existed).Msg("private module published")
	writeJSON(w, status, p)
}

// markRequest is the body of deprecate and yank.
type markRequest struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Reason is the deprecation's ("" takes it back).
	Reason *string `json:"reason"`
	Yanked *bool   `json:"yanked"`
}

func (a *publishAPI) deprecate(w http.ResponseWriter, r *http.Request) {
	a.mark(w, r, func(req markRequest) (private.Mark, string) {
		if req.Reason == nil {
			return private.Mark{}, `"reason" is required ("" takes a deprecation back)`
		}
		return private.Mark{Deprecated: req.Reason}, ""
	})
}

func (a *publishAPI) yank(w http.ResponseWriter, r *http.Request) {
	a.mark(w, r, func(req markRequest) (private.Mark, string) {
		if req.Yanked == nil {
			return private.Mark{}, `"yanked" is required (true or false)`
		}
		return private.Mark{Yanked: req.Yanked}, ""
	})
}

func (a *publishAPI) mark(w http.ResponseWriter, r *http.Request, build func(markRequest) (private.Mark, string)) {
	var req markRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxMarkBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		a.fail(w, http.StatusBadRequest, "the body must be a JSON object with name, version and reason or yanked: "+err.Error())
		return
	}
	m, problem := build(req)
	if problem != "" {
		a.fail(w, http.StatusBadRequest, problem)
		return
	}
	mv := module.Version{Module: req.Name, Version: req.Version}
	if err := a.pub.SetMarks(r.Context(), mv, m); err != nil {
		a.failErr(w, err)
		return
	}
	a.log.Info().Str("module", mv.Module).Str("version", mv.Version).Msg("private module version marked")
	writeJSON(w, http.StatusOK, map[string]string{"name": mv.Module, "version": mv.Version})
}

// failErr answers a refused or failed change with the status that tells
// the client whether to change the request (4xx) or try again (503).
func (a *publishAPI) failErr(w http.ResponseWriter, err error) {
	status := statusOf(err)
	msg := err.Error()
	if status == http.StatusInternalServerError {
		a.log.Error().Err(err).Msg("publish failed")
		msg = "internal error (see the server log)"
	} else if status == http.StatusServiceUnavailable {
		a.log.Warn().Err(err).Msg("publish not completed")
	}
	a.fail(w, status, msg)
}

func (a *publishAPI) fail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
