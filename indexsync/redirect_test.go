package indexsync

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// TestCredentialsStayOnTheConfiguredHost: an index URL (upstream's or a
// source's) that redirects to another host never gets that host its
// header, in any request git makes; with the header, the redirect is not
// followed and the sync fails (git: "returned error: 302"). Without a
// header a redirect is followed as before.
func TestCredentialsStayOnTheConfiguredHost(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, smallIndex(t))
	target, err := url.Parse(up.URL())
	if err != nil {
		t.Fatal(err)
	}
	// The other host: upstream behind a proxy that records what it got.
	var (
		mu   sync.Mutex
		seen []string
	)
	proxy := httputil.NewSingleHostReverseProxy(target)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" Authorization="+r.Header.Get("Authorization"))
		mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(other.Close)
	// The configured host sends every request there.
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.RequestURI(), http.StatusFound)
	}))
	t.Cleanup(redirect.Close)
	indexURL := redirect.URL + "/git/index"

	const header = "Authorization: Bearer secret-for-the-configured-host"
	for _, tt := range []struct {
		name  string
		tweak func(*Options)
	}{
		{"upstream", func(o *Options) { o.UpstreamURL, o.UpstreamHeader = indexURL, header }},
		{"source", func(o *Options) {
			o.Sources = []Source{{Name: "team", URL: indexURL, Owners: []string{"bob"}, Header: header}}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			seen = nil
			mu.Unlock()
			m := newTestMirror(t, up.IndexURL(), tt.tweak)
			_, err := m.Sync(ctxT(t))
			if tt.name == "upstream" && err == nil {
				t.Error("the sync through a redirect with credentials succeeded; want it refused")
			}
			mu.Lock()
			defer mu.Unlock()
			for _, s := range seen {
				if strings.Contains(s, "secret") {
					t.Errorf("the other host got the credential: %s", s)
				}
			}
		})
	}
	t.Run("no credentials: redirect followed", func(t *testing.T) {
		m := newTestMirror(t, indexURL, nil)
		if _, err := m.Sync(ctxT(t)); err != nil {
			t.Fatalf("sync through a redirect without credentials: %v", err)
		}
	})
}
