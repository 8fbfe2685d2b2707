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

// moonClient does what the moon client does against a registry base URL:
// the exact git commands for the index, and archive downloads in the
// form-urlencoded single-segment form, checked against the index checksum.
type moonClient struct {
	t        testing.TB
	base     string
	indexDir string
	http     *http.Client
	env      []string
}

func newMoonClient(t testing.TB, base string) *moonClient {
	t.Helper()
	home := t.TempDir()
	return &moonClient{
		t:        t,
		base:     base,
		indexDir: filepath.Join(t.TempDir(), "index"),
		http:     &http.Client{Timeout: 2 * time.Minute},
		env:      testsupport.GitEnv(home),
	}
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
	_, err := c.git(ctx, "clone", "--depth", "1", "--single-branch", "--no-tags", c.base+"/git/index", c.indexDir)
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
	return c.base + "/user/" + url.QueryEscape(module+"/"+version) + ".zip"
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
	return c.get(ctx, c.base+"/symbols.zip")
}

// get is a GET with the client's User-Agent; anything but 200 is an error.
func (c *moonClient) get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "mooncake/0.1.0")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", u, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}
