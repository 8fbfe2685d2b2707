package testupstream

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
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
		u.serveSearch(w, r)
	case strings.HasPrefix(p, "/api/v0/modules/"):
		u.serveModule(w, r, strings.TrimPrefix(p, "/api/v0/modules/"))
	case strings.HasPrefix(p, "/api/v0/manifest/"):
		u.serveManifest(w, r, strings.TrimPrefix(p, "/api/v0/manifest/"))
	case strings.HasPrefix(p, "/api/v0/user/"):
		u.serveUser(w, r, strings.TrimPrefix(p, "/api/v0/user/"))
	default:
		u.Downloads.serveFile(w, r) // files set with SetFile; 404 otherwise
	}
}

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

// searchResult is one module in /api/v0/search's answer: the client (moon
// PR 2100) reads a bare JSON array of these.
type searchResult struct {
	Name        string `json:"name"`
	Version     string `json:"version"`
	Description string `json:"description,omitempty"`
	Downloads   int    `json:"downloads"`
}

// serveSearch answers /api/v0/search?kw=...&limit=N with the modules whose
// name contains kw (case-insensitive), sorted by name.
func (u *Upstream) serveSearch(w http.ResponseWriter, r *http.Request) {
	if !getOrHead(w, r) {
		return
	}
	kw := strings.ToLower(r.URL.Query().Get("kw"))
	limit := 20
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			http.Error(w, "bad limit", http.StatusBadRequest)
			return
		}
		limit = min(n, 1000)
	}
	items := []searchResult{}
	u.Index.readModules(func(modules map[string]*moduleInfo) {
		for name, m := range modules {
			if !strings.Contains(strings.ToLower(name), kw) || len(m.versions) == 0 {
				continue
			}
			latest := m.versions[len(m.versions)-1]
			items = append(items, searchResult{Name: name, Version: latest, Description: m.info[latest].description})
		}
	})
	sort.Slice(items, func(i, j int) bool { return items[i].Name < items[j].Name })
	if len(items) > limit {
		items = items[:limit]
	}
	u.serveJSON(w, r, items)
}

// serveModule answers /api/v0/modules/<owner>/<name>[@<version>] as
// serveManifest does.
func (u *Upstream) serveModule(w http.ResponseWriter, r *http.Request, spec string) {
	u.serveManifest(w, r, spec)
}

// serveManifest answers /api/v0/manifest/<owner>/<name>[@<version>] in the
// shape moon view reads (module, version, yanked, latest_version,
// metadata, versions), with "source": "testupstream" to tell its answers
// from the registry's own.
func (u *Upstream) serveManifest(w http.ResponseWriter, r *http.Request, spec string) {
	if !getOrHead(w, r) {
		return
	}
	name, version := spec, ""
	if i := strings.LastIndexByte(spec, '@'); i > strings.LastIndexByte(spec, '/') {
		name, version = spec[:i], spec[i+1:]
	}
	var (
		ok       bool
		versions []string
		info     versionInfo
	)
	u.Index.readModules(func(modules map[string]*moduleInfo) {
		var m *moduleInfo
		m, ok = modules[name]
		if ok && len(m.versions) > 0 {
			versions = append(versions, m.versions...)
			if version == "" {
				version = versions[len(versions)-1]
			}
			info, ok = m.info[version]
		}
	})
	if !ok || len(versions) == 0 {
		http.NotFound(w, r)
		return
	}
	releases := make([]map[string]any, len(versions))
	for i, v := range versions {
		releases[i] = map[string]any{"version": v, "yanked": false}
	}
	u.serveJSON(w, r, map[string]any{
		"module": name, "name": name, "version": version, "yanked": false, "yanked_reason": nil,
		"latest_version": versions[len(versions)-1], "build_status": "success", "source": "testupstream",
		"metadata": map[string]any{"name": name, "version": version, "description": info.description},
		"versions": releases,
	})
}

// serveUser answers /api/v0/user/<owner>: each of the owner's modules with
// its latest version, by name.
func (u *Upstream) serveUser(w http.ResponseWriter, r *http.Request, owner string) {
	if !getOrHead(w, r) {
		return
	}
	mods := []map[string]any{}
	u.Index.readModules(func(modules map[string]*moduleInfo) {
		for name, m := range modules {
			if strings.HasPrefix(name, owner+"/") && len(m.versions) > 0 {
				mods = append(mods, map[string]any{"name": name, "version": m.versions[len(m.versions)-1], "yanked": false})
			}
		}
	})
	if len(mods) == 0 {
		http.NotFound(w, r)
		return
	}
	sort.Slice(mods, func(i, j int) bool { return mods[i]["name"].(string) < mods[j]["name"].(string) })
	u.serveJSON(w, r, map[string]any{"username": owner, "modules": mods, "source": "testupstream"})
}

// serveJSON answers with v as JSON, revalidated by ETag on every use.
func (u *Upstream) serveJSON(w http.ResponseWriter, r *http.Request, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("ETag", etag(body))
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}
