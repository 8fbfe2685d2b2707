// Package web is the registry's own pages for people: the status of this
// replica at /, a module browser over the local index (/-/search,
// /-/modules/<name>) and how to point moon here. Server-rendered HTML from
// embedded templates and one stylesheet; no script, nothing fetched from
// elsewhere, so it works offline. /-/status.json is the status for tools
// (the status command).
package web

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"moonbit-registry/catalog"
	"moonbit-registry/internal/human"
	"moonbit-registry/module"
)

//go:embed templates/*.html static/*
var files embed.FS

// Catalog is the local index's search and metadata (*catalog.Catalog).
type Catalog interface {
	Search(ctx context.Context, kw string, limit int) ([]catalog.Summary, error)
	Module(ctx context.Context, name string) (catalog.Module, error)
}

// Status is what the status page and /-/status.json show.
type Status struct {
	Version string        `json:"version"`
	Uptime  time.Duration `json:"-"`
	// UptimeSeconds is Uptime for JSON.
	UptimeSeconds int64       `json:"uptime_seconds"`
	Index         IndexStatus `json:"index"`
	Store         StoreStatus `json:"store"`
	// LastHour counts archive requests and fetches of the last hour.
	LastHour Counts `json:"last_hour"`
	// InFlight is upstream fetches running now.
	InFlight int64 `json:"fetches_in_flight"`
	// Local: read from a registry root, not asked of a running server, so
	// uptime, traffic and upstream's health are unknown.
	Local bool `json:"-"`
}

// ServerOnlyKeys are the JSON keys of Status (and of its "index") that
// only a running server knows; a local status leaves them out.
var ServerOnlyKeys = []string{"uptime_seconds", "last_hour", "fetches_in_flight", "index.upstream_ok", "index.upstream_error", "index.upstream_checked"}

// IndexStatus describes the index mirror.
type IndexStatus struct {
	Commit     string    `json:"commit"`
	AgeSeconds int64     `json:"age_seconds"` // since the last successful sync; -1: never
	LastSync   time.Time `json:"last_sync"`
	LastError  string    `json:"last_error,omitempty"`
	// UpstreamOK: the latest contact with upstream (a sync, a fetch, an
	// API request) got an answer; UpstreamError says why not, and
	// UpstreamChecked is when that contact was.
	UpstreamOK      bool      `json:"upstream_ok"`
	UpstreamError   string    `json:"upstream_error,omitempty"`
	UpstreamChecked time.Time `json:"upstream_checked"`
	Offline         bool      `json:"offline"`
}

// StoreStatus describes the archive store.
type StoreStatus struct {
	Backend  string `json:"backend"`
	Archives int64  `json:"archives"` // -1: not counted (a remote store)
	Bytes    int64  `json:"bytes"`    // -1: not counted
	MaxBytes int64  `json:"max_bytes"`
}

// Counts of archive traffic.
type Counts struct {
	Hits    int64 `json:"hits"`
	Misses  int64 `json:"misses"`
	Fetches int64 `json:"fetches"`
}

// Options configures New.
type Options struct {
	Catalog Catalog
	// Status reports the replica's state at the time of the request.
	Status func(ctx context.Context) Status
	// Cached reports which of a module's versions the store holds; nil
	// when asking costs a request per version (a remote store): the page
	// then does not say.
	Cached func(ctx context.Context, mv module.Version) bool
	// BaseURL is what clients are told to use; "" takes the address the
	// page was asked for (when server.base_url names no reachable host).
	BaseURL string
	// Origin, if set, says where a module comes from when it is not
	// upstream ("private", "from central"); "" for upstream's.
	Origin func(module string) string
}

// Handler serves the pages.
type Handler struct {
	opts Options
	tmpl *template.Template
	mux  *http.ServeMux
}

// New parses the embedded templates.
func New(opts Options) (*Handler, error) {
	if opts.Catalog == nil || opts.Status == nil {
		return nil, errors.New("web: Catalog and Status are required")
	}
	tmpl, err := template.New("").Funcs(template.FuncMap{
		"ago":   ago,
		"age":   func(secs int64) string { return ago(time.Now().Add(-time.Duration(secs) * time.Second)) },
		"bytes": human.Bytes,
		"short": func(s string) string { return s[:min(len(s), 12)] },
		"date":  func(s string) string { return s[:min(len(s), 10)] }, // RFC 3339 → its date
		"origin": func(name string) string {
			if opts.Origin == nil {
				return ""
			}
			return opts.Origin(name)
		},
	}).ParseFS(files, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("web: templates: %w", err)
	}
	h := &Handler{opts: opts, tmpl: tmpl, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /{$}", h.status)
	h.mux.HandleFunc("GET /-/status.json", h.statusJSON)
	h.mux.HandleFunc("GET /-/search", h.search)
	h.mux.HandleFunc("GET /-/modules/{name...}", h.module)
	h.mux.Handle("GET /-/static/", http.StripPrefix("/-/", http.FileServerFS(files)))
	return h, nil
}

// ServeHTTP implements http.Handler for / and /-/....
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// page is what every template gets.
type page struct {
	Title   string
	BaseURL string
	Query   string
	Status  Status
	Results []catalog.Summary
	Module  *catalog.Module
	Cached  map[string]bool // nil: not known
	Error   string
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	p.BaseURL = h.opts.BaseURL
	if p.BaseURL == "" {
		scheme := "http://"
		if r.TLS != nil {
			scheme = "https://"
		}
		p.BaseURL = scheme + r.Host
	}
	var b bytes.Buffer
	if err := h.tmpl.ExecuteTemplate(&b, name, p); err != nil {
		http.Error(w, "page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	b.WriteTo(w)
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, http.StatusOK, "status.html", page{Title: "moonbit-registry", Status: h.opts.Status(r.Context())})
}

func (h *Handler) statusJSON(w http.ResponseWriter, r *http.Request) {
	st := h.opts.Status(r.Context())
	st.UptimeSeconds = int64(st.Uptime.Seconds())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(st)
}

// searchLimit is how many modules a search page lists.
const searchLimit = 50

func (h *Handler) search(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	p := page{Title: "Search: " + q, Query: q}
	if q != "" {
		res, err := h.opts.Catalog.Search(r.Context(), q, searchLimit)
		if err != nil {
			p.Error = "The local index cannot be searched right now: " + err.Error()
			h.render(w, r, http.StatusServiceUnavailable, "search.html", p)
			return
		}
		p.Results = res
	}
	h.render(w, r, http.StatusOK, "search.html", p)
}

func (h *Handler) module(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	m, err := h.opts.Catalog.Module(r.Context(), name)
	switch {
	case errors.Is(err, module.ErrBadName):
		h.render(w, r, http.StatusBadRequest, "module.html", page{Title: name, Error: err.Error()})
		return
	case errors.Is(err, catalog.ErrNotFound):
		h.render(w, r, http.StatusNotFound, "module.html", page{Title: name, Error: "No module " + name + " in the index."})
		return
	case err != nil:
		h.render(w, r, http.StatusServiceUnavailable, "module.html", page{Title: name, Error: "The local index cannot answer right now: " + err.Error()})
		return
	}
	var cached map[string]bool
	if h.opts.Cached != nil {
		cached = map[string]bool{}
		for _, v := range m.Versions {
			cached[v.Version] = h.opts.Cached(r.Context(), module.Version{Module: name, Version: v.Version})
		}
	}
	// Newest first on the page.
	for i, j := 0, len(m.Versions)-1; i < j; i, j = i+1, j-1 {
		m.Versions[i], m.Versions[j] = m.Versions[j], m.Versions[i]
	}
	h.render(w, r, http.StatusOK, "module.html", page{Title: name, Module: &m, Cached: cached})
}

// ago renders a duration since t for people ("3m ago"); "never" for zero.
func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}
