package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"moonbit-registry/module"
	"moonbit-registry/private"
	"moonbit-registry/store"
)

// fakePublisher answers with err, or a publish of acme/lib@1.0.0.
type fakePublisher struct {
	err     error
	existed bool
	got     []byte
	mark    private.Mark
}

func (f *fakePublisher) Publish(_ context.Context, body io.Reader) (private.Published, error) {
	f.got, _ = io.ReadAll(body)
	if f.err != nil {
		return private.Published{}, f.err
	}
	return private.Published{Archive: module.Version{Module: "acme/lib", Version: "1.0.0"}, Checksum: "ab", Existed: f.existed}, nil
}

func (f *fakePublisher) SetMarks(_ context.Context, _ module.Version, m private.Mark) error {
	f.mark = m
	return f.err
}

const testPublishToken = "publish-secret"

func publishServer(t *testing.T, pub Publisher, readTokens ...string) *httptest.Server {
	t.Helper()
	var read [][sha256.Size]byte
	for _, tok := range readTokens {
		read = append(read, sha256.Sum256([]byte(tok)))
	}
	srv := httptest.NewServer(New(Options{
		Publisher:     pub,
		PublishTokens: [][sha256.Size]byte{sha256.Sum256([]byte(testPublishToken))},
		Auth:          Auth{TokenDigests: read},
		Logger:        zerolog.Nop(),
	}).Handler())
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans map[string]any
	json.NewDecoder(resp.Body).Decode(&ans)
	return resp.StatusCode, ans
}

func TestPublishStatuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		err    error
		status int
	}{
		{"invalid", fmt.Errorf("%w: no moon.mod.json", private.ErrInvalid), http.StatusBadRequest},
		{"bad name", fmt.Errorf("x: %w", module.ErrBadName), http.StatusBadRequest},
		{"too large", private.ErrTooLarge, http.StatusRequestEntityTooLarge},
		{"not reserved", private.ErrNotReserved, http.StatusForbidden},
		{"read-only", private.ErrReadOnly, http.StatusForbidden},
		{"conflict", private.ErrConflict, http.StatusConflict},
		{"index pending", fmt.Errorf("%w: later", private.ErrIndexPending), http.StatusServiceUnavailable},
		{"store down", fmt.Errorf("%w: bucket", store.ErrUnavailable), http.StatusServiceUnavailable},
		{"disk full", fmt.Errorf("%w: ENOSPC", store.ErrWrite), http.StatusServiceUnavailable},
		{"other", errors.New("boom"), http.StatusInternalServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := publishServer(t, &fakePublisher{err: tc.err})
			status, ans := post(t, srv.URL+"/-/api/publish", testPublishToken, "zip")
			if status != tc.status || ans["error"] == "" {
				t.Errorf("status %d (%v), want %d with an error message", status, ans, tc.status)
			}
		})
	}
	pub := &fakePublisher{}
	srv := publishServer(t, pub)
	if status, ans := post(t, srv.URL+"/-/api/publish", testPublishToken, "zip bytes"); status != http.StatusCreated || ans["name"] != "acme/lib" || string(pub.got) != "zip bytes" {
		t.Errorf("publish: %d %v, body seen %q", status, ans, pub.got)
	}
	pub.existed = true
	if status, ans := post(t, srv.URL+"/-/api/publish", testPublishToken, "zip"); status != http.StatusOK || ans["existed"] != true {
		t.Errorf("identical publish: %d %v", status, ans)
	}
}

func TestPublishAuthAndRoutes(t *testing.T) {
	t.Parallel()
	pub := &fakePublisher{}
	// Reading needs a token here; the publish token opens the write API
	// (and reading), a read token does not open the write API.
	srv := publishServer(t, pub, "read-only")
	for _, tc := range []struct {
		name, path, token, body string
		status                  int
	}{
		{"no token", "/-/api/publish", "", "zip", http.StatusUnauthorized},
		{"read-only token", "/-/api/publish", "read-only", "zip", http.StatusUnauthorized},
		{"unknown route", "/-/api/delete", testPublishToken, "", http.StatusNotFound},
		{"deprecate without reason", "/-/api/deprecate", testPublishToken, `{"name":"acme/lib","version":"1.0.0"}`, http.StatusBadRequest},
		{"yank unknown field", "/-/api/yank", testPublishToken, `{"name":"acme/lib","version":"1.0.0","yanked":true,"force":1}`, http.StatusBadRequest},
		{"deprecate", "/-/api/deprecate", testPublishToken, `{"name":"acme/lib","version":"1.0.0","reason":"old"}`, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if status, ans := post(t, srv.URL+tc.path, tc.token, tc.body); status != tc.status {
				t.Errorf("%s: %d %v, want %d", tc.path, status, ans, tc.status)
			}
		})
	}
	if pub.mark.Deprecated == nil || *pub.mark.Deprecated != "old" {
		t.Errorf("deprecate reached the publisher as %+v", pub.mark)
	}
	off := httptest.NewServer(New(Options{Logger: zerolog.Nop()}).Handler())
	defer off.Close()
	if status, ans := post(t, off.URL+"/-/api/publish", testPublishToken, "zip"); status != http.StatusForbidden || !strings.Contains(fmt.Sprint(ans["error"]), "[private] owners") {
		t.Errorf("without private modules: %d %v", status, ans)
	}
}
