package web

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"moonbit-registry/catalog"
)

// hostileCatalog answers with what a hostile index line could carry.
type hostileCatalog struct{}

const hostile = `"><script>alert(1)</script><img src=x onerror=alert(2)>`

func (hostileCatalog) Search(context.Context, string, int) ([]catalog.Summary, error) {
	return []catalog.Summary{{Name: "evil/mod", Version: "1.0.0", Description: hostile, Keywords: []string{hostile}}}, nil
}

func (hostileCatalog) Module(_ context.Context, name string) (catalog.Module, error) {
	return catalog.Module{
		Name: name, LatestVersion: "1.0.0", Description: hostile, Repository: "javascript:alert(3)", Deprecated: hostile,
		Versions: []catalog.ModuleVersion{{Version: "1.0.0", Deprecated: hostile, Checksum: hostile, Deps: map[string]string{"javascript:alert(4)": hostile}}},
	}, nil
}

// Whatever the index says, the pages show it as text: no script, no
// javascript: link.
func TestPagesEscapeTheIndex(t *testing.T) {
	h, err := New(Options{Catalog: hostileCatalog{}, Status: func(context.Context) Status { return Status{} }, BaseURL: hostile})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/", "/-/search?q=x", "/-/modules/evil/mod"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		body, _ := io.ReadAll(rec.Body)
		page := string(body)
		if rec.Code != http.StatusOK {
			t.Errorf("%s: %d", path, rec.Code)
		}
		for _, bad := range []string{"<script>", "<img", `href="javascript:`} {
			if strings.Contains(page, bad) {
				t.Errorf("%s: the page contains %q", path, bad)
			}
		}
	}
}

// A module that is not upstream's says so on its page and in search.
func TestPagesShowOrigin(t *testing.T) {
	origin := func(mod string) string {
		if strings.HasPrefix(mod, "evil/") {
			return "private"
		}
		return ""
	}
	h, err := New(Options{Catalog: hostileCatalog{}, Status: func(context.Context) Status { return Status{} }, Origin: origin})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/-/search?q=x", "/-/modules/evil/mod"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if body := rec.Body.String(); !strings.Contains(body, `<span class="origin">private</span>`) {
			t.Errorf("%s does not mark the private module:\n%s", path, body)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/-/modules/good/mod", nil))
	if strings.Contains(rec.Body.String(), `class="origin"`) {
		t.Error("an upstream module is marked")
	}
}
