package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moonbit-registry/internal/testsupport"
	"moonbit-registry/internal/testupstream"
)

const authModule = "moonbitlang/lex/runtime"

// authCLI runs `moonbit-registry auth ...` with stdin and returns stdout.
func authCLI(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, registryBin, append([]string{"auth"}, args...)...)
	cmd.Env = append(os.Environ(), noRaceExitSleep)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("auth %v: %v\n%s", args, err, errb.String())
	}
	return strings.TrimSpace(out.String())
}

// waitReadyWith polls /readyz with a client and a header until 200: the
// harness's own wait has no credentials and speaks plain HTTP.
func waitReadyWith(t *testing.T, r *registry, client *http.Client, base, authorization string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, _ := http.NewRequest("GET", base+"/readyz", nil)
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry not ready within 60s (last: %v)\n%s", err, r.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// headerTransport adds an Authorization header to every request, as a
// client configured with a token would.
type headerTransport struct{ authorization string }

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", h.authorization)
	return http.DefaultTransport.RoundTrip(r)
}

// TestAuthThroughProxy runs the real binary with a token and a basic user
// (both made with its auth command): without or with wrong credentials
// every route but /healthz answers 401; with right ones git clones the
// index and archives download.
func TestAuthThroughProxy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const token, password = "e2e-token-5b1d", "e2e pass: wörd"
	tokenDigest := authCLI(t, token+"\n", "hash-token")
	userEntry := authCLI(t, password+"\n", "hash-password", "--user", "alice")
	if !strings.HasPrefix(userEntry, "alice:$2") || len(tokenDigest) != 64 {
		t.Fatalf("auth command output: %q, %q", tokenDigest, userEntry)
	}

	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{testupstream.EveryVersion(authModule)}})
	reg := startRegistry(t, registryOptions{
		UpstreamURL: up.URL(),
		NoWaitReady: true,
		Env: []string{
			"MOONBIT_REGISTRY_SERVER_AUTH_TOKENS=" + tokenDigest,
			"MOONBIT_REGISTRY_SERVER_AUTH_USERS=" + userEntry,
		},
	})
	waitReadyWith(t, reg, http.DefaultClient, reg.URL, "Bearer "+token)
	hostPort := strings.TrimPrefix(reg.URL, "http://")

	t.Run("rejected", func(t *testing.T) {
		paths := []string{
			"/readyz",
			"/git/index/info/refs?service=git-upload-pack",
			"/user/" + url.QueryEscape(authModule+"/0.1.0") + ".zip",
			"/user/" + authModule + "/0.1.0.zip",
			"/symbols.zip",
			"/api/v0/search?q=x",
			"/assets/" + authModule + "/0.1.0/resource.json",
		}
		creds := []struct {
			name, authorization string
			onlyPath            string // "": every path (bcrypt checks are slow in a -race binary)
		}{
			{"none", "", ""},
			{"wrong token", "Bearer e2e-token-5b1e", ""},
			{"token digest as token", "Bearer " + tokenDigest, ""},
			{"wrong password", "Basic " + basicCred("alice", password+"x"), paths[1]},
			{"unknown user", "Basic " + basicCred("bob", password), paths[2]},
		}
		for _, p := range paths {
			for _, c := range creds {
				if c.onlyPath != "" && c.onlyPath != p {
					continue
				}
				req, _ := http.NewRequest("GET", reg.URL+p, nil)
				if c.authorization != "" {
					req.Header.Set("Authorization", c.authorization)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("GET %s with %s: %d, want 401", p, c.name, resp.StatusCode)
				} else if ch := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Basic ") {
					t.Errorf("GET %s with %s: WWW-Authenticate %q, want a Basic challenge", p, c.name, ch)
				}
			}
		}
		resp, err := http.Get(reg.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("/healthz without credentials: %d, want 200", resp.StatusCode)
		}
		if n := up.Count("/user/" + authModule + "/0.1.0.zip"); n != 0 {
			t.Errorf("rejected archive requests reached upstream %d times", n)
		}
	})

	t.Run("git without or with wrong credentials", func(t *testing.T) {
		for _, base := range []string{reg.URL, "http://alice:nope@" + hostPort, "http://x:wrong-token@" + hostPort} {
			c := newMoonClient(t, base)
			err := c.CloneIndex(ctx)
			if err == nil {
				t.Errorf("clone from %s succeeded, want an authentication failure", base)
			} else if !strings.Contains(err.Error(), "Authentication failed") && !strings.Contains(err.Error(), "could not read Username") {
				t.Errorf("clone from %s failed for another reason: %v", base, err)
			}
		}
	})

	t.Run("bearer token: git http.extraHeader and archives", func(t *testing.T) {
		c := newMoonClient(t, reg.URL)
		if _, err := c.git(ctx, "-c", "http.extraHeader=Authorization: Bearer "+token,
			"clone", "--depth", "1", "--single-branch", "--no-tags", reg.URL+"/git/index", c.indexDir); err != nil {
			t.Fatal(err)
		}
		c.http = &http.Client{Timeout: 2 * time.Minute, Transport: headerTransport{"Bearer " + token}}
		downloadAll(ctx, t, c)
		// Shared caches must not keep what needed credentials.
		versions, _ := c.Versions(authModule)
		resp, err := c.http.Get(c.archiveURL(authModule, versions[0]))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if cc := resp.Header.Get("Cache-Control"); !strings.HasPrefix(cc, "private") {
			t.Errorf("Cache-Control with auth on = %q, want private", cc)
		}
	})

	t.Run("URL credentials: basic user", func(t *testing.T) {
		// What MOONCAKES_REGISTRY=http://alice:...@host gives moon: git and
		// the archive client both take the credentials from the URL.
		c := newMoonClient(t, "http://"+url.UserPassword("alice", password).String()+"@"+hostPort)
		if err := c.CloneIndex(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.PullIndex(ctx); err != nil {
			t.Fatal(err)
		}
		downloadAll(ctx, t, c)
	})

	t.Run("URL credentials: token as password", func(t *testing.T) {
		c := newMoonClient(t, "http://ci:"+token+"@"+hostPort)
		if err := c.CloneIndex(ctx); err != nil {
			t.Fatal(err)
		}
		downloadAll(ctx, t, c)
	})

	logs := reg.Logs()
	if !strings.Contains(logs, `"status":401`) {
		t.Error("no 401 in the access log")
	}
	for _, secret := range []string{token, url.QueryEscape(password), password, basicCred("alice", password)} {
		if strings.Contains(logs, secret) {
			t.Errorf("the registry log contains a secret (%q)", secret)
		}
	}
}

func basicCred(user, pass string) string {
	req, _ := http.NewRequest("GET", "http://x/", nil)
	req.SetBasicAuth(user, pass)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

// downloadAll fetches every version of authModule, each checked against the
// client's cloned index.
func downloadAll(ctx context.Context, t *testing.T, c *moonClient) {
	t.Helper()
	versions, err := c.Versions(authModule)
	if err != nil || len(versions) == 0 {
		t.Fatalf("versions of %s in the cloned index: %v %v", authModule, versions, err)
	}
	for _, v := range versions {
		if _, err := c.Download(ctx, authModule, v); err != nil {
			t.Error(err)
		}
	}
}

// TestTLSServe serves over HTTPS with a self-signed certificate: a client
// trusting it gets /healthz and clones the index with git; base_url
// defaults to https://; plain HTTP and clients not trusting the
// certificate are refused.
func TestTLSServe(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	root := t.TempDir()
	certFile := filepath.Join(root, "cert.pem")
	testsupport.WriteSelfSigned(t, certFile, filepath.Join(root, "key.pem"))
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{testupstream.EveryVersion(authModule)}})
	reg := startRegistry(t, registryOptions{
		Root:        root,
		UpstreamURL: up.URL(),
		NoWaitReady: true,
		// Relative paths resolve against the registry root.
		Env: []string{"MOONBIT_REGISTRY_SERVER_CERT_FILE=cert.pem", "MOONBIT_REGISTRY_SERVER_KEY_FILE=key.pem"},
	})
	base := "https://" + strings.TrimPrefix(reg.URL, "http://")

	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	trusting := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}

	resp, err := trusting.Get(base + "/healthz")
	if err != nil {
		t.Fatalf("HTTPS /healthz: %v\n%s", err, reg.Logs())
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		t.Fatalf("HTTPS /healthz = %d %q", resp.StatusCode, body)
	}
	waitReadyWith(t, reg, trusting, base, "")

	if !strings.Contains(reg.Logs(), `"base_url":"https://127.0.0.1:0"`) {
		t.Errorf("base_url does not default to https:// with TLS on:\n%s", reg.Logs())
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("a client not trusting the certificate connected")
	}
	if resp, err := http.Get(reg.URL + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP to the TLS port answered 200")
		}
	}

	c := newMoonClient(t, base)
	c.http = trusting
	if _, err := c.git(ctx, "-c", "http.sslCAInfo="+certFile,
		"clone", "--depth", "1", "--single-branch", "--no-tags", base+"/git/index", c.indexDir); err != nil {
		t.Fatal(err)
	}
	downloadAll(ctx, t, c)

	// Without the CA git refuses the server.
	untrusting := newMoonClient(t, base)
	if err := untrusting.CloneIndex(ctx); err == nil {
		t.Error("git cloned over TLS without trusting the certificate")
	}
}

// TestTLSMissingFilesStopStartup: serve refuses to start when a key pair
// file is missing, naming the key.
func TestTLSMissingFilesStopStartup(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	conf := "[server]\ncert_file = \"tls/cert.pem\"\nkey_file = \"tls/key.pem\"\n"
	if err := os.WriteFile(filepath.Join(root, "registry.toml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runRegistry(t, root, "", "serve", "--listen", "127.0.0.1:0")
	if code == 0 || !strings.Contains(stderr, "server.cert_file") || !strings.Contains(stderr, filepath.Join(root, "tls", "cert.pem")) {
		t.Fatalf("exit %d, stderr %q: want a non-zero exit naming server.cert_file and the file", code, stderr)
	}
}
