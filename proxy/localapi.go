package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"moonbit-registry/catalog"
	"moonbit-registry/module"
)

// Catalog answers API questions from the local index (a *catalog.Catalog):
// what the pass-through serves when upstream cannot answer.
type Catalog interface {
	Search(ctx context.Context, kw string, limit int) ([]catalog.Summary, error)
	All(ctx context.Context) ([]catalog.Summary, error)
	View(ctx context.Context, name, version string) (catalog.View, error)
	User(ctx context.Context, owner string) (catalog.User, error)
}

// localAnswerHeader marks an answer made from the local index rather than
// by upstream.
const localAnswerHeader = "X-Registry-Answer"

// apiRoute classifies an /api/v0/ path the local index can answer.
type apiRoute int

const (
	apiOther    apiRoute = iota // not answerable locally
	apiSearch                   // /api/v0/search?kw=&limit=
	apiModules                  // /api/v0/modules: every module
	apiModule                   // /api/v0/modules/<owner>/<name>[@<version>]
	apiManifest                 // /api/v0/manifest/<owner>/<name>[@<version>]
	apiUser                     // /api/v0/user/<owner>
)

// apiPrefixes are the path prefixes of the routes about one module or
// user.
var apiPrefixes = map[apiRoute]string{apiModule: "/api/v0/modules/", apiManifest: "/api/v0/manifest/", apiUser: "/api/v0/user/"}

// apiSubject is what a module, manifest or user route asks about: the
// path after its prefix ("owner/name", "owner/name@version", "owner").
func apiSubject(route apiRoute, path string) string {
	return strings.TrimPrefix(path, apiPrefixes[route])
}

// apiOwner is the owner a module, manifest or user route asks about.
func apiOwner(route apiRoute, path string) string {
	name, _ := splitRelease(apiSubject(route, path))
	return module.Owner(name)
}

// splitRelease splits "owner/name@version" (as moon view sends it: the
// version after the last segment, unencoded) into name and version; the
// version is "" when none is given.
func splitRelease(spec string) (name, version string) {
	if i := strings.LastIndexByte(spec, '@'); i > strings.LastIndexByte(spec, '/') {
		return spec[:i], spec[i+1:]
	}
	return spec, ""
}

func classifyAPI(path string) apiRoute {
	switch {
	case path == "/api/v0/search":
		return apiSearch
	case path == "/api/v0/modules":
		return apiModules
	case strings.HasPrefix(path, "/api/v0/modules/"):
		return apiModule
	case strings.HasPrefix(path, "/api/v0/manifest/"):
		return apiManifest
	case strings.HasPrefix(path, "/api/v0/user/") && !strings.Contains(strings.TrimPrefix(path, "/api/v0/user/"), "/"):
		return apiUser
	}
	return apiOther
}

// serveLocal answers r from the catalog; why says, in a 404, why the local
// index answered. It reports false when the catalog
// cannot say anything better than the upstream failure the caller already
// has (no catalog, a path it does not know, an index that is not there or
// not current); the caller then answers that failure.
func serveLocal(w http.ResponseWriter, r *http.Request, cat Catalog, route apiRoute, why string) bool {
	if cat == nil || route == apiOther {
		return false
	}
	ctx := r.Context()
	var answer any
	var err error
	switch route {
	case apiSearch:
		q := r.URL.Query()
		limit := catalog.DefaultSearchLimit
		if s := q.Get("limit"); s != "" {
			n, perr := strconv.Atoi(s)
			if perr != nil || n < 0 {
				http.Error(w, "limit must be a non-negative integer", http.StatusBadRequest)
				return true
			}
			limit = min(n, catalog.MaxSearchLimit)
		}
		answer, err = cat.Search(ctx, q.Get("kw"), limit)
	case apiModules:
		answer, err = cat.All(ctx)
	case apiModule, apiManifest:
		// Both answer moon view's shape: third-party tools read the
		// modules route for the same fields.
		name, version := splitRelease(apiSubject(route, r.URL.Path))
		answer, err = cat.View(ctx, name, version)
	case apiUser:
		answer, err = cat.User(ctx, apiSubject(route, r.URL.Path))
	}
	switch {
	case errors.Is(err, module.ErrBadName):
		http.Error(w, err.Error(), http.StatusBadRequest)
		return true
	case errors.Is(err, catalog.ErrNotFound):
		w.Header().Set(localAnswerHeader, "local-index")
		http.Error(w, err.Error()+" (answered from the local index: "+why+")", http.StatusNotFound)
		return true
	case err != nil:
		return false
	}
	body, err := json.Marshal(answer)
	if err != nil {
		return false
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	// Upstream's answer may differ once it is back: nobody should keep this.
	h.Set("Cache-Control", "no-store")
	h.Set(localAnswerHeader, "local-index")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
	return true
}
