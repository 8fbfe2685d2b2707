package testupstream

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// api answers the JSON API under /api/v0/ from the index's module table:
// search, a module version's manifest (what moon view reads) and a user's
// modules.
type api struct{ index *Index }

// searchResult is one module in /api/v0/search's answer: the client (moon
// PR 2100) reads a bare JSON array of these.
type searchResult struct {
	Name        string `json:"name"`
	Version     string `json:"version"`
	Description string `json:"description,omitempty"`
	Downloads   int    `json:"downloads"`
}

// search answers /api/v0/search?kw=...&limit=N with the modules whose
// name contains kw (case-insensitive), sorted by name.
func (a api) search(w http.ResponseWriter, r *http.Request) {
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
	a.index.readModules(func(modules map[string]*moduleInfo) {
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
	serveJSON(w, r, items)
}

// manifest answers /api/v0/manifest/<owner>/<name>[@<version>] in the
// shape moon view reads (module, version, yanked, latest_version,
// metadata, versions), with "source": "testupstream" to tell its answers
// from the registry's own.
func (a api) manifest(w http.ResponseWriter, r *http.Request, spec string) {
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
	a.index.readModules(func(modules map[string]*moduleInfo) {
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
	serveJSON(w, r, map[string]any{
		"module": name, "name": name, "version": version, "yanked": false, "yanked_reason": nil,
		"latest_version": versions[len(versions)-1], "build_status": "success", "source": "testupstream",
		"metadata": map[string]any{"name": name, "version": version, "description": info.description},
		"versions": releases,
	})
}

// user answers /api/v0/user/<owner>: each of the owner's modules with
// its latest version, by name.
func (a api) user(w http.ResponseWriter, r *http.Request, owner string) {
	if !getOrHead(w, r) {
		return
	}
	mods := []map[string]any{}
	a.index.readModules(func(modules map[string]*moduleInfo) {
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
	serveJSON(w, r, map[string]any{"username": owner, "modules": mods, "source": "testupstream"})
}

// serveJSON answers with v as JSON, revalidated by ETag on every use.
func serveJSON(w http.ResponseWriter, r *http.Request, v any) {
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
