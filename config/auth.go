package config

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// PasswordCost is the bcrypt cost HashPassword uses: about 50ms per check on
// a current core, which the server pays once per user per few minutes (it
// caches successful checks).
const PasswordCost = 10

// AuthEnabled reports whether clients must authenticate.
func (s Server) AuthEnabled() bool { return len(s.AuthTokens) > 0 || len(s.AuthUsers) > 0 }

// TLSEnabled reports whether the server speaks HTTPS.
func (s Server) TLSEnabled() bool { return s.CertFile != "" }

// BaseURLUnreachable reports a base URL no client can use: one on the
// unspecified address (0.0.0.0, ::), without a host, or on port 0, as
// base_url derived from a listen address like ":8080", "0.0.0.0:8080" or
// "127.0.0.1:0" is.
func (s Server) BaseURLUnreachable() bool {
	u, err := url.Parse(s.BaseURL)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if host == "" || u.Port() == "0" { // ":0": a port chosen at start
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// Credentials returns the accepted bearer token digests and the bcrypt
// password hash of each basic-auth user. Load has validated both lists, so
// malformed entries cannot occur here and are skipped.
func (s Server) Credentials() (tokens [][sha256.Size]byte, users map[string][]byte) {
	for _, t := range s.AuthTokens {
		if d, err := ParseTokenDigest(t); err == nil {
			tokens = append(tokens, d)
		}
	}
	if s.AuthEnabled() {
		// A token that may publish may read too (without read auth, anyone
		// may read).
		tokens = append(tokens, s.PublishDigests()...)
	}
	users = map[string][]byte{}
	for _, u := range s.AuthUsers {
		if name, hash, err := ParseAuthUser(u); err == nil {
			users[name] = []byte(hash)
		}
	}
	return tokens, users
}

// LoadTLS reads the certificate and key named by cert_file and key_file; nil
// without TLS. It runs at start-up so a missing or mismatched file stops
// serve with a message naming the keys.
func (s Server) LoadTLS() (*tls.Config, error) {
	if !s.TLSEnabled() {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("server.cert_file %q / server.key_file %q: %w", s.CertFile, s.KeyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// ParseTokenDigest parses one auth_tokens entry: the hex SHA-256 digest of a
// bearer token (never the token itself).
func ParseTokenDigest(s string) ([sha256.Size]byte, error) {
	var d [sha256.Size]byte
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != sha256.Size {
		return d, errors.New("not a SHA-256 digest (64 hex digits)")
	}
	copy(d[:], b)
	if d == sha256.Sum256(nil) {
		return d, errors.New("the digest of an empty token")
	}
	return d, nil
}

// ParseAuthUser parses one auth_users entry, "name:bcrypt-hash" (the form
// htpasswd -nB writes).
func ParseAuthUser(s string) (name, hash string, err error) {
	name, hash, ok := strings.Cut(strings.TrimSpace(s), ":")
	switch {
	case !ok:
		return "", "", errors.New(`want "name:bcrypt-hash"`)
	case name == "":
		return "", "", errors.New("empty user name")
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return "", "", errors.New("user name has control characters")
	}
	if _, err := bcrypt.Cost([]byte(hash)); err != nil {
		// Not echoed: a mistake here is often a plain-text password.
		return name, "", errors.New("the password is not a bcrypt hash")
	}
	return name, hash, nil
}

// HashToken returns the auth_tokens entry for a bearer token.
func HashToken(token string) string {
	d := sha256.Sum256([]byte(token))
	return hex.EncodeToString(d[:])
}

// HashPassword returns the bcrypt hash of a password for an auth_users entry.
func HashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), PasswordCost)
	if err != nil {
		return "", err
	}
	return string(h), nil
}

// NewToken returns a random bearer token: 32 bytes, hex.
func NewToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand panics rather than return short)
	return hex.EncodeToString(b)
}

// ReadSecret reads a token or password: the first line of r without its line
// ending. Empty is an error.
func ReadSecret(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty secret on standard input")
	}
	return line, nil
}

// validateAuth checks the auth and TLS keys of [server]. Error messages
// never quote an entry's secret part: a misplaced plain-text token or
// password would otherwise end up in logs. It also makes cert_file and
// key_file absolute, like the other paths.
func (c *Config) validateAuth(src sources) error {
	bad := func(key, why string) error {
		return fmt.Errorf("%w: %s: %s (%s)", ErrInvalid, key, why, src.of(key))
	}
	for i, t := range c.Server.AuthTokens {
		if _, err := ParseTokenDigest(t); err != nil {
			return bad("server.auth_tokens", fmt.Sprintf("entry %d: %v; store the token's digest (moonbit-registry auth hash-token), not the token", i+1, err))
		}
	}
	for i, t := range c.Server.PublishTokens {
		if _, err := ParseTokenDigest(t); err != nil {
			return bad("server.publish_tokens", fmt.Sprintf("entry %d: %v; store the token's digest (moonbit-registry auth new-token --publish), not the token", i+1, err))
		}
	}
	seen := map[string]bool{}
	for i, u := range c.Server.AuthUsers {
		name, _, err := ParseAuthUser(u)
		if err != nil {
			who := ""
			if name != "" {
				who = fmt.Sprintf(" (user %q)", name)
			}
			return bad("server.auth_users", fmt.Sprintf("entry %d%s: %v; make the hash with: moonbit-registry auth hash-password", i+1, who, err))
		}
		if seen[name] {
			return bad("server.auth_users", fmt.Sprintf("entry %d: user %q appears twice", i+1, name))
		}
		seen[name] = true
	}
	if (c.Server.CertFile == "") != (c.Server.KeyFile == "") {
		set, unset := "server.cert_file", "server.key_file"
		if c.Server.CertFile == "" {
			set, unset = unset, set
		}
		return bad(set, "set without "+unset+": give both or neither")
	}
	for _, p := range []*string{&c.Server.CertFile, &c.Server.KeyFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(c.Root, *p)
		}
	}
	return nil
}

// PublishDigests are the digests of the tokens that may publish.
func (s Server) PublishDigests() [][sha256.Size]byte {
	var out [][sha256.Size]byte
	for _, t := range s.PublishTokens {
		if d, err := ParseTokenDigest(t); err == nil {
			out = append(out, d)
		}
	}
	return out
}
