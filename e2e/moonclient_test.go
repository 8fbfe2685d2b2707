package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
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
)

// moonClient does what the moon client does against a registry: the exact
// git commands for the index, archive downloads in the form-urlencoded
// single-segment form checked against the index checksum, symbols, search
// and metadata, each at the URL the client's configuration gives it.
type moonClient struct {
	t        testing.TB
	index    string // git URL of the index
	download string // base of archives, symbols.zip and assets
	api      string // base of /api/v0/...
	symbols  string // URL of symbols.zip
	indexDir string
	http     *http.Client
	env      []string
}

// newMoonClient is a client with MOONCAKES_REGISTRY=base and no
// config.json: everything comes from base.
func newMoonClient(t testing.TB, base string) *moonClient {
	t.Helper()
	return newMoonClientURLs(t, base+"/git/index", base, base, base+"/symbols.zip")
}

func newMoonClientURLs(t testing.TB, index, download, api, symbols string) *moonClient {
	t.Helper()
	home := t.TempDir()
	return &moonClient{
		t:        t,
		index:    index,
		download: download,
		api:      api,
		symbols:  symbols,
		indexDir: filepath.Join(t.TempDir(), "index"),
		http:     &http.Client{Timeout: 2 * time.Minute},
		env:      testsupport.GitEnv(home),
	}
}

// upstreamDefault stands for where a client sends what its configuration
// does not name: mooncakes.io, unreachable from the tests.
const upstreamDefault = "https://download.mooncakes.io"

// newMoonClientFromConfig reads $MOON_HOME/config.json as the client does:
// the split form ("download" present: "api", "index", "download", optional
// "symbols") or the legacy one ("registry" and "index" required, symbols
// from "symbols" or else from mooncakes.io).
func newMoonClientFromConfig(t testing.TB, moonHome string) *moonClient {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(moonHome, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct{ Registry, Index, Symbols, API, Download string }
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatalf("config.json: %v (the client panics on it)\n%s", err, data)
	}
	if cfg.Download != "" {
		if cfg.API == "" || cfg.Index == "" {
			t.Fatalf("split config.json without api or index: %s", data)
		}
		symbols := cfg.Symbols
		if symbols == "" {
			symbols = cfg.Download + "/symbols.zip"
		}
		return newMoonClientURLs(t, cfg.Index, cfg.Download, cfg.API, symbols)
	}
	if cfg.Registry == "" || cfg.Index == "" {
		t.Fatalf("legacy config.json without registry or index (the client panics): %s", data)
	}
	symbols := cfg.Symbols
	if symbols == "" {
		symbols = upstreamDefault + "/symbols.zip"
	}
	return newMoonClientURLs(t, cfg.Index, cfg.Registry, cfg.Registry, symbols)
}

// git runs git as moon does, with an isolated HOME and no prompts.
func (c *moonClient) git(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("git %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// CloneIndex runs moon's first-time index clone.
func (c *moonClient) CloneIndex(ctx context.Context) error {
	os.RemoveAll(c.indexDir)
	_, err := c.git(ctx, "clone", "--depth", "1", "--single-branch", "--no-tags", c.index, c.indexDir)
	return err
}

// PullIndex runs moon's later index update.
func (c *moonClient) PullIndex(ctx context.Context) error {
	_, err := c.git(ctx, "-C", c.indexDir, "pull", "origin", "main")
	return err
}

// Checksum reads a version's checksum from the client's cloned index; a
// later line for the same version wins, as in the client.
func (c *moonClient) Checksum(module, version string) (string, error) {
	f, err := os.Open(filepath.Join(c.indexDir, "user", filepath.FromSlash(module)+".index"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sum := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var line struct {
			Version  string `json:"version"`
			Checksum string `json:"checksum"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Version == version {
			sum = line.Checksum
		}
	}
	if sum == "" {
		return "", fmt.Errorf("%s@%s not in the cloned index", module, version)
	}
	return sum, sc.Err()
}

// Versions lists the versions of a module in the client's cloned index.
func (c *moonClient) Versions(module string) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(c.indexDir, "user", filepath.FromSlash(module)+".index"))
	if err != nil {
		return nil, err
	}
	var out []string
	seen := map[string]bool{}
	for _, l := range bytes.Split(data, []byte("\n")) {
		var line struct {
			Version string `json:"version"`
		}
		if json.Unmarshal(l, &line) == nil && line.Version != "" && !seen[line.Version] {
			seen[line.Version] = true
			out = append(out, line.Version)
		}
	}
	return out, nil
}

// archiveURL is the form current clients request: one form-urlencoded
// segment (url.QueryEscape turns '/' into %2F and '+' into %2B).
func (c *moonClient) archiveURL(module, version string) string {
	return c.download + "/user/" + url.QueryEscape(module+"/"+version) + ".zip"
}

// Download fetches an archive as the client does and rejects it unless its
// SHA-256 equals the index checksum. It returns the bytes.
func (c *moonClient) Download(ctx context.Context, module, version string) ([]byte, error) {
	want, err := c.Checksum(module, version)
	if err != nil {
		return nil, err
	}
	body, err := c.get(ctx, c.archiveURL(module, version))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	if got := hex.EncodeToString(sum[:]); got != want {
		return nil, fmt.Errorf("%s@%s: sha256 %s, index says %s", module, version, got, want)
	}
	return body, nil
}

// Symbols fetches symbols.zip as moon update does.
func (c *moonClient) Symbols(ctx context.Context) ([]byte, error) {
	return c.get(ctx, c.symbols)
}

// get is a GET with the client's User-Agent; anything but 200 is an error.
func (c *moonClient) get(ctx context.Context, u string) ([]byte, error) {
	body, _, err := c.getWithHeader(ctx, u)
	return body, err
}

// retryable is what moon retries (PR 2244), up to three times; never 404.
func retryable(status int) bool {
	switch status {
	case 408, 429, 500, 502, 503, 504:
		return true
	}
	return false
}

// getWithHeader is get with the answer's header. Like moon it retries a
// retryable status up to three times, at once.
func (c *moonClient) getWithHeader(ctx context.Context, u string) ([]byte, http.Header, error) {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, nil, err
		}
		req.Header.Set("User-Agent", "mooncake/0.1.0")
		resp, err := c.http.Do(req)
		if err != nil {
			return nil, nil, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, nil, err
		}
		if resp.StatusCode == http.StatusOK {
			return body, resp.Header, nil
		}
		if !retryable(resp.StatusCode) || attempt == 3 {
			return nil, resp.Header, &statusError{url: u, status: resp.StatusCode, body: string(bytes.TrimSpace(body))}
		}
	}
}

// statusError is an answer other than 200.
type statusError struct {
	url    string
	status int
	body   string
}

func (e *statusError) Error() string { return fmt.Sprintf("GET %s: %d: %s", e.url, e.status, e.body) }

// SearchResult is one entry of a search answer, as the client reads it.
type SearchResult struct {
	Name        string   `json:"name"`
	Version     string   `json:"version"`
	Description string   `json:"description"`
	Keywords    []string `json:"keywords"`
}

// Search runs moon search's request: a bare JSON array, or an error.
func (c *moonClient) Search(ctx context.Context, kw string, limit int) ([]SearchResult, http.Header, error) {
	u := fmt.Sprintf("%s/api/v0/search?kw=%s&limit=%d", c.api, url.QueryEscape(kw), limit)
	body, hdr, err := c.getWithHeader(ctx, u)
	if err != nil {
		return nil, nil, err
	}
	var out []SearchResult
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, nil, fmt.Errorf("search answer is not a JSON array: %w: %.200s", err, body)
	}
	return out, hdr, nil
}

// Asset fetches a prebuilt wasm asset (or its .sha256) from the download
// base, unencoded as the client sends it.
func (c *moonClient) Asset(ctx context.Context, path string) ([]byte, error) {
	return c.get(ctx, c.download+"/assets/"+path)
}
