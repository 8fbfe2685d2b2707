package proxy

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Auth is what clients may authenticate with. With neither tokens nor users
// every request is let through.
type Auth struct {
	// TokenDigests are SHA-256 digests of the accepted bearer tokens. A
	// token is also accepted as the password of HTTP basic auth with any user
	// name, so clients that only know URL credentials can use one.
	TokenDigests [][sha256.Size]byte
	// Users maps a basic-auth user name to its bcrypt password hash.
	Users map[string][]byte
}

func (a Auth) enabled() bool { return len(a.TokenDigests) > 0 || len(a.Users) > 0 }

// authChallenge makes git (and browsers) send basic credentials from the URL
// or a credential helper; without it git never sends them.
const authChallenge = `Basic realm="moonbit-registry", charset="UTF-8"`

// verifiedTTL is how long a successful password check is remembered. A git
// clone makes several requests and moon fetches many archives; each would
// otherwise pay a bcrypt check (about 50ms of CPU at cost 10).
const verifiedTTL = 5 * time.Minute

// Failed password checks from one client address beyond maxFailures within
// failureWindow are answered 429 without a bcrypt check, so a flood (or a
// brute force) cannot keep the checks busy: about one a second on average,
// plenty for people mistyping; failureClients bounds the addresses
// remembered.
const (
	maxFailures    = 60
	failureWindow  = time.Minute
	failureClients = 4096
)

// authenticator checks the credentials of one request.
type authenticator struct {
	tokens [][sha256.Size]byte
	users  map[string][]byte
	// decoy is compared against for unknown users, so the response time
	// does not tell which user names exist.
	decoy []byte
	// macKey keys the digests of remembered passwords: a memory dump does
	// not yield hashes that are cheap to brute-force.
	macKey [32]byte
	// slots bounds concurrent bcrypt checks so a flood of wrong passwords
	// cannot take every core from the requests being served. knownSlots
	// serve credentials that passed a check before (their remembered
	// digest expired): they never wait behind unknown ones.
	slots, knownSlots chan struct{}
	failures          failureCounter

	mu sync.Mutex
	// verified holds, per user, the keyed digest of the password last
	// checked successfully and until when it is trusted. It has at most one
	// entry per configured user.
	verified map[string]verifiedPassword

	now          func() time.Time
	bcryptChecks atomic.Int64 // for tests and benchmarks
}

type verifiedPassword struct {
	mac     [sha256.Size]byte
	expires time.Time
}

// newAuthenticator returns nil when auth is off.
func newAuthenticator(a Auth) *authenticator {
	if !a.enabled() {
		return nil
	}
	au := &authenticator{
		tokens:     a.TokenDigests,
		users:      a.Users,
		slots:      make(chan struct{}, runtime.GOMAXPROCS(0)),
		knownSlots: make(chan struct{}, 1),
		verified:   map[string]verifiedPassword{},
		now:        time.Now,
	}
	for _, h := range a.Users {
		au.decoy = h
		break
	}
	rand.Read(au.macKey[:])
	return au
}

// allow reports whether the request carries valid credentials: a bearer
// token, or basic auth with a user's password or a token as the password.
func (a *authenticator) allow(r *http.Request) bool {
	return a.check(r) == authOK
}

// authResult is what check found.
type authResult int

const (
	authDenied  authResult = iota
	authOK                 // valid credentials
	authLimited            // too many failed attempts from this client lately
)

// check is allow, telling a client over its failure budget apart.
func (a *authenticator) check(r *http.Request) authResult {
	scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	switch strings.ToLower(scheme) {
	case "bearer":
		if a.tokenOK(strings.TrimSpace(cred)) {
			return authOK
		}
	case "basic":
		user, pass, ok := r.BasicAuth()
		if !ok {
			return authDenied
		}
		if len(a.tokens) > 0 && a.tokenOK(pass) {
			return authOK
		}
		client := clientAddr(r)
		if !a.knownGood(user, pass) && a.failures.over(client, a.now()) {
			return authLimited
		}
		if a.passwordOK(r.Context(), user, pass) {
			return authOK
		}
		if r.Context().Err() == nil {
			a.failures.add(client, a.now())
		}
	}
	return authDenied
}

// clientAddr is the request's peer address without the port.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// knownGood reports whether user and pass passed a check before (the
// configured hashes never change while the process runs).
func (a *authenticator) knownGood(user, pass string) bool {
	mac := a.mac(user, pass)
	a.mu.Lock()
	v, ok := a.verified[user]
	a.mu.Unlock()
	return ok && hmac.Equal(v.mac[:], mac[:])
}

func (a *authenticator) tokenOK(token string) bool { return tokenMatches(token, a.tokens) }

// tokenMatches compares the token's digest with every digest given, in
// constant time.
func tokenMatches(token string, digests [][sha256.Size]byte) bool {
	if token == "" {
		return false
	}
	d := sha256.Sum256([]byte(token))
	match := 0
	for _, t := range digests {
		match |= subtle.ConstantTimeCompare(d[:], t[:])
	}
	return match == 1
}

func (a *authenticator) passwordOK(ctx context.Context, user, pass string) bool {
	if len(a.users) == 0 {
		return false
	}
	mac := a.mac(user, pass)
	a.mu.Lock()
	v, ok := a.verified[user]
	a.mu.Unlock()
	if ok && a.now().Before(v.expires) && hmac.Equal(v.mac[:], mac[:]) {
		return true
	}
	hash, known := a.users[user]
	if !known {
		hash = a.decoy
	}
	slots := a.slots
	if ok && hmac.Equal(v.mac[:], mac[:]) {
		slots = a.knownSlots // checked before; only the digest expired
	}
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	a.bcryptChecks.Add(1)
	err := bcrypt.CompareHashAndPassword(hash, []byte(pass))
	<-slots
	if !known || err != nil {
		return false
	}
	a.mu.Lock()
	a.verified[user] = verifiedPassword{mac: mac, expires: a.now().Add(verifiedTTL)}
	a.mu.Unlock()
	return true
}

func (a *authenticator) mac(user, pass string) [sha256.Size]byte {
	m := hmac.New(sha256.New, a.macKey[:])
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write([]byte(pass))
	var out [sha256.Size]byte
	m.Sum(out[:0])
	return out
}

// requireAuth answers 401 to requests without valid credentials, except
// for /healthz (liveness probes carry none). Authorized requests go on
// without their Authorization header, so it never reaches git http-backend's
// environment or any handler.
func (s *Server) requireAuth(next http.Handler) http.Handler {
	a := newAuthenticator(s.opts.Auth)
	if a == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			next.ServeHTTP(w, r)
			return
		}
		switch a.check(r) {
		case authLimited:
			w.Header().Set("Retry-After", strconv.Itoa(int(failureWindow.Seconds())))
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, "too many failed authentication attempts; try again later", http.StatusTooManyRequests)
			return
		case authDenied:
			// The reason is not logged: the access log has the 401, and
			// anything more would be about the secret.
			w.Header().Set("WWW-Authenticate", authChallenge)
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		r2 := r.WithContext(r.Context())
		r2.Header = r.Header.Clone()
		r2.Header.Del("Authorization")
		next.ServeHTTP(w, r2)
	})
}

// failureCounter counts failed password checks per client address within
// failureWindow, for at most failureClients addresses (the oldest are
// forgotten first).
type failureCounter struct {
	mu sync.Mutex
	m  map[string]*clientFailures
}

type clientFailures struct {
	since time.Time // start of the current window
	n     int
}

func (f *failureCounter) over(client string, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.m[client]
	return c != nil && now.Sub(c.since) < failureWindow && c.n >= maxFailures
}

func (f *failureCounter) add(client string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]*clientFailures{}
	}
	c := f.m[client]
	if c == nil || now.Sub(c.since) >= failureWindow {
		if c == nil && len(f.m) >= failureClients {
			f.forgetOldest()
		}
		c = &clientFailures{since: now}
		f.m[client] = c
	}
	c.n++
}

func (f *failureCounter) forgetOldest() {
	var oldest string
	var at time.Time
	for k, c := range f.m {
		if oldest == "" || c.since.Before(at) {
			oldest, at = k, c.since
		}
	}
	delete(f.m, oldest)
}
