package config

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moonbit-registry/internal/testsupport"

	"golang.org/x/crypto/bcrypt"
)

// cheapHash is a valid bcrypt hash at the lowest cost, so tests stay fast.
func cheapHash(t *testing.T, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestAuthKeysLoad(t *testing.T) {
	tokenDigest := HashToken("t0ken")
	alice, bob := cheapHash(t, "alice-pw"), cheapHash(t, "bob-pw")
	dir := writeConfig(t, `
[server]
listen = "127.0.0.1:8443"
auth_tokens = ["`+strings.ToUpper(tokenDigest)+`"]
auth_users = ["alice:`+alice+`"]
cert_file = "tls/cert.pem"
key_file = "/etc/key.pem"
`)
	cfg, err := Load(LoadOptions{Root: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Server.AuthEnabled() || !cfg.Server.TLSEnabled() {
		t.Fatalf("auth %v, tls %v: want both on", cfg.Server.AuthEnabled(), cfg.Server.TLSEnabled())
	}
	if cfg.Server.BaseURL != "https://127.0.0.1:8443" {
		t.Errorf("BaseURL = %q, want https:// with TLS on", cfg.Server.BaseURL)
	}
	if want := filepath.Join(dir, "tls", "cert.pem"); cfg.Server.CertFile != want || cfg.Server.KeyFile != "/etc/key.pem" {
		t.Errorf("cert_file %q key_file %q: want %q and the absolute path kept", cfg.Server.CertFile, cfg.Server.KeyFile, want)
	}
	tokens, users := cfg.Server.Credentials()
	if len(tokens) != 1 || tokens[0] != sha256.Sum256([]byte("t0ken")) {
		t.Errorf("token digests = %x", tokens)
	}
	if len(users) != 1 || string(users["alice"]) != alice {
		t.Errorf("users = %q", users)
	}

	// The environment replaces the lists (comma-separated).
	cfg, err = Load(LoadOptions{Root: dir, Env: []string{
		"MOONBIT_REGISTRY_SERVER_AUTH_USERS=alice:" + alice + ", bob:" + bob,
		"MOONBIT_REGISTRY_SERVER_AUTH_TOKENS=",
	}})
	if err != nil {
		t.Fatal(err)
	}
	tokens, users = cfg.Server.Credentials()
	if len(tokens) != 0 || len(users) != 2 || string(users["bob"]) != bob {
		t.Errorf("from the environment: tokens %x users %q", tokens, users)
	}
}

func TestAuthOffByDefault(t *testing.T) {
	cfg, err := Load(LoadOptions{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.AuthEnabled() || cfg.Server.TLSEnabled() {
		t.Error("auth or TLS on by default")
	}
	if tls, err := cfg.Server.LoadTLS(); tls != nil || err != nil {
		t.Errorf("LoadTLS without TLS = %v, %v", tls, err)
	}
	if !strings.HasPrefix(cfg.Server.BaseURL, "http://") {
		t.Errorf("BaseURL = %q", cfg.Server.BaseURL)
	}
}

func TestAuthErrors(t *testing.T) {
	hash := cheapHash(t, "pw")
	tests := []struct {
		name    string
		file    string
		env     []string
		want    []string
		notWant []string // secrets that must not be echoed
	}{
		{name: "plain token", file: "[server]\nauth_tokens = [\"hunter2-plain-token\"]\n",
			want: []string{"server.auth_tokens", "entry 1", "line 2", "SHA-256", "hash-token"}, notWant: []string{"hunter2"}},
		{name: "short digest", file: "[server]\n\nauth_tokens = [\"" + HashToken("a") + "\", \"abcd\"]\n",
			want: []string{"server.auth_tokens", "entry 2", "line 3"}},
		{name: "digest of empty token", file: "[server]\nauth_tokens = [\"" + HashToken("") + "\"]\n",
			want: []string{"server.auth_tokens", "empty token"}},
		{name: "plain password", file: "[server]\nauth_users = [\"alice:hunter2\"]\n",
			want: []string{"server.auth_users", "entry 1", `user "alice"`, "not a bcrypt hash", "line 2", "hash-password"}, notWant: []string{"hunter2"}},
		{name: "no colon", file: "[server]\nauth_users = [\"alice\"]\n",
			want: []string{"server.auth_users", "name:bcrypt-hash", "line 2"}},
		{name: "empty name", file: "[server]\nauth_users = [\":" + hash + "\"]\n",
			want: []string{"server.auth_users", "empty user name"}},
		{name: "duplicate user", file: "[server]\nauth_users = [\"a:" + hash + "\",\n  \"a:" + hash + "\"]\n",
			want: []string{"server.auth_users", "entry 2", `"a" appears twice`, "line 2"}},
		{name: "cert without key", file: "[server]\ncert_file = \"c.pem\"\n",
			want: []string{"server.cert_file", "without server.key_file", "line 2"}},
		{name: "env key without cert", env: []string{"MOONBIT_REGISTRY_SERVER_KEY_FILE=k.pem"},
			want: []string{"server.key_file", "without server.cert_file", "environment MOONBIT_REGISTRY_SERVER_KEY_FILE"}},
		{name: "env plain password", env: []string{"MOONBIT_REGISTRY_SERVER_AUTH_USERS=bob:s3cr3t-pw"},
			want: []string{"server.auth_users", `user "bob"`, "environment MOONBIT_REGISTRY_SERVER_AUTH_USERS"}, notWant: []string{"s3cr3t"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(LoadOptions{Root: writeConfig(t, tt.file), Env: tt.env})
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error %q echoes the secret %q", err, w)
				}
			}
		})
	}
}

func TestHashHelpers(t *testing.T) {
	if got, want := HashToken("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf("HashToken(abc) = %s, want %s", got, want)
	}
	a, b := NewToken(), NewToken()
	if a == b || len(a) != 64 {
		t.Errorf("NewToken gave %q and %q", a, b)
	}
	if _, err := hex.DecodeString(a); err != nil {
		t.Errorf("NewToken %q is not hex", a)
	}

	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if cost, _ := bcrypt.Cost([]byte(h)); cost != PasswordCost {
		t.Errorf("cost %d, want %d", cost, PasswordCost)
	}
	name, got, err := ParseAuthUser("carol:" + h)
	if err != nil || name != "carol" || got != h {
		t.Fatalf("ParseAuthUser = %q %q %v", name, got, err)
	}
	if bcrypt.CompareHashAndPassword([]byte(got), []byte("correct horse")) != nil ||
		bcrypt.CompareHashAndPassword([]byte(got), []byte("wrong horse")) == nil {
		t.Error("the hash does not check the password")
	}
	// htpasswd -nB writes $2y$; that is bcrypt too.
	if _, _, err := ParseAuthUser("dave:$2y" + h[3:]); err != nil {
		t.Errorf("$2y$ hash rejected: %v", err)
	}
}

func TestReadSecret(t *testing.T) {
	tests := []struct {
		in, want string
		err      bool
	}{
		{"pw\n", "pw", false}, {"pw\r\n", "pw", false}, {"pw", "pw", false},
		{"first\nsecond\n", "first", false}, {" spaced pw \n", " spaced pw ", false},
		{"", "", true}, {"\n", "", true},
	}
	for _, tt := range tests {
		got, err := ReadSecret(strings.NewReader(tt.in))
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("ReadSecret(%q) = %q, %v; want %q, err=%v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestLoadTLS(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := testsupport.SelfSigned(t)
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, cert, key string
		want            []string // substrings of the error; none: success
	}{
		{name: "ok", cert: "cert.pem", key: "key.pem"},
		{name: "missing cert", cert: "nope.pem", key: "key.pem", want: []string{"server.cert_file", "nope.pem", "no such file"}},
		{name: "missing key", cert: "cert.pem", key: "nokey.pem", want: []string{"server.key_file", "nokey.pem"}},
		{name: "swapped", cert: "key.pem", key: "cert.pem", want: []string{"server.cert_file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(LoadOptions{Root: dir, File: os.DevNull, Env: []string{
				"MOONBIT_REGISTRY_SERVER_CERT_FILE=" + tt.cert, "MOONBIT_REGISTRY_SERVER_KEY_FILE=" + tt.key,
			}})
			if err != nil {
				t.Fatal(err)
			}
			tc, err := cfg.Server.LoadTLS()
			if len(tt.want) == 0 {
				if err != nil || tc == nil || len(tc.Certificates) != 1 {
					t.Fatalf("LoadTLS = %v, %v", tc, err)
				}
				return
			}
			if err == nil {
				t.Fatal("LoadTLS succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
