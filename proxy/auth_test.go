package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"moonbit-registry/internal/testsupport"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"
)

const (
	testToken    = "tok-3f9a1c"
	testPassword = "alice-pw-77"
)

func testAuth(t testing.TB, cost int) Auth {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(testPassword), cost)
	if err != nil {
		t.Fatal(err)
	}
	return Auth{
		TokenDigests: [][sha256.Size]byte{sha256.Sum256([]byte("another-token")), sha256.Sum256([]byte(testToken))},
		Users:        map[string][]byte{"alice": h},
	}
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func TestAuthEveryRouteButHealthz(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var leaked []string // Authorization headers that reached a handler
	reached := 0
	pass := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reached++
		if a := r.Header.Get("Authorization"); a != "" {
			leaked = append(leaked, a)
		}
		mu.Unlock()
		io.WriteString(w, "passed through\n")
	})
	log := &testsupport.LogBuffer{}
	srv := httptest.NewServer(New(Options{
		Auth:        testAuth(t, bcrypt.MinCost),
		Passthrough: pass,
		Logger:      zerolog.New(log),
	}).Handler())
	defer srv.Close()

	routes := []struct{ method, path string }{
		{"GET", "/healthz"},
		{"GET", "/readyz"},
		{"GET", "/git/index/info/refs?service=git-upload-pack"},
		{"POST", "/git/index/git-upload-pack"},
		{"GET", "/user/moonbitlang%2Fx%2F0.4.6.zip"},
		{"GET", "/user/moonbitlang/x/0.4.6.zip"},
		{"GET", "/symbols.zip"},
		{"GET", "/assets/moonbitlang/x/0.4.6/resource.json"},
		{"GET", "/api/v0/modules"},
		{"GET", "/no/such/route"},
		{"HEAD", "/symbols.zip"},
	}
	creds := []struct {
		name   string
		header string // Authorization; "" sends none
		ok     bool
	}{
		{"none", "", false},
		{"wrong token", "Bearer not-the-token", false},
		{"empty bearer", "Bearer ", false},
		{"right token", "Bearer " + testToken, true},
		{"right token lower-case scheme", "bearer " + testToken, true},
		{"token with another scheme", "Token " + testToken, false},
		{"basic right password", basic("alice", testPassword), true},
		{"basic wrong password", basic("alice", "wrong"), false},
		{"basic unknown user", basic("mallory", testPassword), false},
		{"basic user name only", basic("alice", ""), false},
		{"basic token as password", basic("anyone", testToken), true},
		{"basic token as user name", basic(testToken, ""), false},
		{"basic not base64", "Basic !!!", false},
	}
	for _, rt := range routes {
		for _, c := range creds {
			t.Run(rt.method+" "+rt.path+"/"+c.name, func(t *testing.T) {
				req, err := http.NewRequest(rt.method, srv.URL+rt.path, strings.NewReader(""))
				if err != nil {
					t.Fatal(err)
				}
				if c.header != "" {
					req.Header.Set("Authorization", c.header)
				}
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				exempt := strings.HasPrefix(rt.path, "/healthz")
				switch {
				case exempt && resp.StatusCode != http.StatusOK:
					t.Errorf("status %d, want 200: /healthz needs no credentials", resp.StatusCode)
				case !exempt && !c.ok:
					if resp.StatusCode != http.StatusUnauthorized {
						t.Fatalf("status %d, want 401 (%s)", resp.StatusCode, body)
					}
					if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, `Basic realm="moonbit-registry"`) {
						t.Errorf("WWW-Authenticate = %q, want a Basic challenge (git needs it to send URL credentials)", got)
					}
				case resp.StatusCode == http.StatusUnauthorized:
					t.Errorf("status 401 with valid credentials (%s)", body)
				}
			})
		}
	}

	mu.Lock()
	defer mu.Unlock()
	if reached == 0 {
		t.Fatal("no authorized request reached the pass-through handler")
	}
	if len(leaked) > 0 {
		t.Errorf("the Authorization header reached a handler: %q", leaked)
	}
	logs := log.String()
	if !strings.Contains(logs, `"status":401`) || !strings.Contains(logs, `"path":"/symbols.zip"`) {
		t.Errorf("rejected requests are not in the access log:\n%s", logs)
	}
	for _, secret := range []string{testToken, testPassword, base64.StdEncoding.EncodeToString([]byte("alice:" + testPassword))} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains the secret %q", secret)
		}
	}
}

func TestAuthOffLetsEverythingThrough(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(New(Options{Logger: zerolog.Nop(), Auth: Auth{Users: map[string][]byte{}}}).Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz without auth configured: %d, want 200", resp.StatusCode)
	}
}

// TestPasswordCheckRemembered: git and moon make many requests; only the
// first with a given password pays bcrypt, until the entry expires, and a
// wrong password never profits from the cache.
func TestPasswordCheckRemembered(t *testing.T) {
	a := newAuthenticator(testAuth(t, bcrypt.MinCost))
	now := time.Unix(1e9, 0)
	a.now = func() time.Time { return now }
	ctx := context.Background()
	steps := []struct {
		name       string
		user, pass string
		advance    time.Duration
		ok         bool
		checks     int64 // bcrypt checks so far
	}{
		{"first right password pays bcrypt", "alice", testPassword, 0, true, 1},
		{"second is remembered", "alice", testPassword, 0, true, 1},
		{"still remembered before expiry", "alice", testPassword, verifiedTTL - time.Second, true, 1},
		{"wrong password is checked", "alice", "wrong", 0, false, 2},
		{"wrong password again is checked again", "alice", "wrong", 0, false, 3},
		{"right password still remembered", "alice", testPassword, 0, true, 3},
		{"unknown user pays bcrypt too (no timing oracle)", "bob", testPassword, 0, false, 4},
		{"expired entry is checked again", "alice", testPassword, 2 * time.Second, true, 5},
		{"and remembered again", "alice", testPassword, 0, true, 5},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		if got := a.passwordOK(ctx, s.user, s.pass); got != s.ok {
			t.Errorf("%s: passwordOK = %v, want %v", s.name, got, s.ok)
		}
		if got := a.bcryptChecks.Load(); got != s.checks {
			t.Errorf("%s: %d bcrypt checks, want %d", s.name, got, s.checks)
		}
	}
	if len(a.verified) != 1 {
		t.Errorf("%d remembered entries, want 1 (one per user)", len(a.verified))
	}
}

// TestPasswordCheckGivesUpWithTheRequest: a request waiting for a bcrypt
// slot stops waiting when the client goes away.
func TestPasswordCheckGivesUpWithTheRequest(t *testing.T) {
	a := newAuthenticator(testAuth(t, bcrypt.MinCost))
	for range cap(a.slots) {
		a.slots <- struct{}{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan bool)
	go func() { done <- a.passwordOK(ctx, "alice", testPassword) }()
	cancel()
	select {
	case ok := <-done:
		if ok {
			t.Error("passwordOK = true without a check")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("passwordOK did not return after the context was cancelled")
	}
	if n := a.bcryptChecks.Load(); n != 0 {
		t.Errorf("%d bcrypt checks, want 0", n)
	}
}

// BenchmarkBasicAuth compares a request's password check when remembered
// with a full bcrypt check at the cost `auth hash-password` uses (10).
func BenchmarkBasicAuth(b *testing.B) {
	auth := testAuth(b, bcrypt.DefaultCost)
	req := httptest.NewRequest("GET", "/symbols.zip", nil)
	req.Header.Set("Authorization", basic("alice", testPassword))
	b.Run("remembered", func(b *testing.B) {
		a := newAuthenticator(auth)
		a.allow(req) // the one bcrypt check
		for b.Loop() {
			if !a.allow(req) {
				b.Fatal("rejected")
			}
		}
	})
	b.Run("bcrypt", func(b *testing.B) {
		a := newAuthenticator(auth)
		for b.Loop() {
			clear(a.verified)
			if !a.allow(req) {
				b.Fatal("rejected")
			}
		}
	})
	b.Run("token", func(b *testing.B) {
		a := newAuthenticator(auth)
		tr := httptest.NewRequest("GET", "/symbols.zip", nil)
		tr.Header.Set("Authorization", "Bearer "+testToken)
		for b.Loop() {
			if !a.allow(tr) {
				b.Fatal("rejected")
			}
		}
	})
}

// authRequest is a request from client with basic credentials.
func authRequest(client, user, pass string) *http.Request {
	r := httptest.NewRequest("GET", "/symbols.zip", nil)
	r.RemoteAddr = client + ":40000"
	r.Header.Set("Authorization", basic(user, pass))
	return r
}

// A client that keeps failing is answered 429 before any bcrypt check;
// other clients, and credentials that passed before, are not held up.
func TestFailedPasswordChecksRateLimitedPerClient(t *testing.T) {
	t.Parallel()
	a := newAuthenticator(testAuth(t, bcrypt.MinCost))
	if a.check(authRequest("192.0.2.7", "alice", testPassword)) != authOK {
		t.Fatal("the right password was refused")
	}
	for i := range maxFailures {
		if got := a.check(authRequest("192.0.2.9", "alice", fmt.Sprint("guess", i))); got != authDenied {
			t.Fatalf("failure %d: %v, want denied", i+1, got)
		}
	}
	checks := a.bcryptChecks.Load()
	if got := a.check(authRequest("192.0.2.9", "mallory", "guess")); got != authLimited {
		t.Errorf("after %d failures: %v, want limited", maxFailures, got)
	}
	if n := a.bcryptChecks.Load(); n != checks {
		t.Errorf("%d bcrypt checks for a limited client, want none", n-checks)
	}
	if got := a.check(authRequest("192.0.2.10", "alice", "guess")); got != authDenied {
		t.Errorf("another client: %v, want denied (checked, not limited)", got)
	}
	if got := a.check(authRequest("192.0.2.9", "alice", testPassword)); got != authOK {
		t.Errorf("a known-good password from the limited client: %v, want ok", got)
	}
	// The budget comes back after the window.
	later := time.Now().Add(failureWindow + time.Second)
	a.now = func() time.Time { return later }
	if got := a.check(authRequest("192.0.2.9", "alice", "guess")); got != authDenied {
		t.Errorf("after the window: %v, want denied (checked again)", got)
	}

	// Over HTTP: 429 with Retry-After.
	srv := New(Options{Auth: testAuth(t, bcrypt.MinCost), Logger: zerolog.Nop()})
	var last *httptest.ResponseRecorder
	for range maxFailures + 1 {
		last = httptest.NewRecorder()
		srv.Handler().ServeHTTP(last, authRequest("192.0.2.11", "alice", "wrong"))
	}
	if last.Code != http.StatusTooManyRequests || last.Header().Get("Retry-After") == "" {
		t.Errorf("over the budget: %d, Retry-After %q; want 429 with Retry-After", last.Code, last.Header().Get("Retry-After"))
	}
}

// A credential that passed a check before never waits behind unknown ones,
// even once its remembered digest has expired.
func TestKnownGoodPasswordDoesNotWaitBehindUnknownOnes(t *testing.T) {
	a := newAuthenticator(testAuth(t, bcrypt.MinCost))
	if !a.passwordOK(context.Background(), "alice", testPassword) {
		t.Fatal("the right password was refused")
	}
	later := time.Now().Add(2 * verifiedTTL)
	a.now = func() time.Time { return later }
	for range cap(a.slots) { // unknown credentials hold every check
		a.slots <- struct{}{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !a.passwordOK(ctx, "alice", testPassword) {
		t.Fatal("a known-good password waited behind unknown ones (or was refused)")
	}
	short, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if a.passwordOK(short, "alice", "an unknown one") {
		t.Error("an unknown password passed")
	}
	if short.Err() == nil {
		t.Error("an unknown password did not wait for a check slot")
	}
}
