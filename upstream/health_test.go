package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestHealthFollowsEveryContact: the latest contact decides, an answer
// below 500 is health, a transport error or a 5xx is not, a contact that
// began before the latest recorded one changes nothing, and a request
// whose caller left is not counted.
func TestHealthFollowsEveryContact(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }))
	defer srv.Close()
	var h Health
	client := &http.Client{Transport: h.Transport(nil)}
	get := func(ctx context.Context) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	check := func(step string, wantOK bool) {
		t.Helper()
		at, ok, reason := h.Last()
		if at.IsZero() || ok != wantOK || (reason == "") != wantOK {
			t.Errorf("%s: at %v ok %v reason %q, want ok %v", step, at, ok, reason, wantOK)
		}
	}
	if at, ok, _ := h.Last(); !at.IsZero() || ok {
		t.Fatal("health before any contact has a time, or says upstream answered")
	}
	for _, tt := range []struct {
		status int
		wantOK bool
	}{{200, true}, {404, true}, {503, false}, {429, true}, {500, false}, {200, true}} {
		status = tt.status
		get(t.Context())
		check(http.StatusText(tt.status), tt.wantOK)
	}
	h.Observe(time.Now().Add(-time.Hour), errors.New("an old failure"))
	check("an older contact finishing late", true)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	get(ctx)
	check("a request whose caller left", true)

	status = http.StatusOK
	get(t.Context())
	check("answered again", true)
	deadline, cancel := context.WithTimeout(t.Context(), time.Nanosecond)
	defer cancel()
	<-deadline.Done()
	get(deadline)
	check("the caller's deadline ran out", false)

	srv.Close()
	get(t.Context())
	check("connection refused", false)

	// A body that breaks off after the headers.
	cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.Write([]byte("short"))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}))
	defer cut.Close()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, cut.URL, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	check("a body cut short", false)
}
