package testupstream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cgi"
	"os/exec"
	"sort"
	"strings"
	"time"

	"moonbit-registry/internal/testsupport"
)

// commitEpoch is the date of the first index commit (the snapshot's date);
// commit n is dated n minutes later so every commit id is reproducible.
func commitEpoch() time.Time { return time.Date(2026, time.February, 14, 0, 0, 0, 0, time.UTC) }

// gitRepo is the bare index repository the upstream serves. Commits are
// written with git fast-import: one pack instead of a loose object per
// file, several times faster on the 887-file index than git add.
type gitRepo struct {
	git     string // path of the git binary
	dir     string // the bare repository; served as <root>/index
	env     []string
	commits int // commits made so far, for their dates
}

func newGitRepo(ctx context.Context, dir, home string) (*gitRepo, error) {
	gitPath, err := exec.LookPath("git")
	if err != nil {
		return nil, fmt.Errorf("find git: %w", err)
	}
	g := &gitRepo{git: gitPath, dir: dir, env: testsupport.GitEnv(home)}
	if _, err := g.run(ctx, nil, "init", "--quiet", "--bare", "--initial-branch=main", dir); err != nil {
		return nil, err
	}
	config := [][2]string{
		// Keep non-ASCII file names as they are in git's output.
		{"core.quotepath", "false"},
		// No background gc or maintenance that could outlive Close.
		{"gc.auto", "0"},
		{"maintenance.auto", "false"},
		// Read-only: refuse pushes even if a request gets through.
		{"http.receivepack", "false"},
		{"uploadpack.allowFilter", "true"},
	}
	for _, kv := range config {
		if _, err := g.run(ctx, nil, "config", kv[0], kv[1]); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// run runs git in the repository with stdin (may be nil) and returns its
// trimmed stdout.
func (g *gitRepo) run(ctx context.Context, stdin []byte, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, g.git, args...)
	if args[0] != "init" {
		cmd.Dir = g.dir
	}
	cmd.Env = append(append([]string(nil), g.env...), g.identity()...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// date is the fixed date of the next commit, in git's raw format.
func (g *gitRepo) date() string {
	return fmt.Sprintf("%d +0000", commitEpoch().Add(time.Duration(g.commits)*time.Minute).Unix())
}

// identity fixes author and committer so commit ids are reproducible.
func (g *gitRepo) identity() []string {
	date := "@" + g.date()
	return []string{
		"GIT_AUTHOR_NAME=testupstream",
		"GIT_AUTHOR_EMAIL=testupstream@example.invalid",
		"GIT_AUTHOR_DATE=" + date,
		"GIT_COMMITTER_NAME=testupstream",
		"GIT_COMMITTER_EMAIL=testupstream@example.invalid",
		"GIT_COMMITTER_DATE=" + date,
	}
}

// commitFiles commits files (slash paths to contents) on main. With root
// set the commit has no parent and holds exactly files; otherwise it
// fast-forwards main, changing only the given files.
func (g *gitRepo) commitFiles(ctx context.Context, files map[string][]byte, msg string, root bool) (string, error) {
	names := make([]string, 0, len(files))
	size := 0
	for name, b := range files {
		if strings.ContainsAny(name, "\n\"") {
			return "", fmt.Errorf("commit: unsupported path %q", name)
		}
		names = append(names, name)
		size += len(name) + len(b) + 64
	}
	sort.Strings(names)
	var s bytes.Buffer
	s.Grow(size + 512)
	who := "testupstream <testupstream@example.invalid> " + g.date()
	fmt.Fprintf(&s, "commit refs/heads/main\nauthor %s\ncommitter %s\ndata %d\n%s\n", who, who, len(msg), msg)
	if !root {
		s.WriteString("from refs/heads/main^0\n")
	}
	for _, name := range names {
		fmt.Fprintf(&s, "M 100644 inline %s\ndata %d\n", name, len(files[name]))
		s.Write(files[name])
		s.WriteByte('\n')
	}
	s.WriteString("done\n")
	args := []string{"fast-import", "--quiet", "--done", "--date-format=raw"}
	if root {
		args = append(args, "--force") // replacing main is the point
	}
	if _, err := g.run(ctx, s.Bytes(), args...); err != nil {
		return "", err
	}
	g.commits++
	return g.run(ctx, nil, "rev-parse", "--verify", "refs/heads/main")
}

// rewrite replaces main with a new root commit holding main's tree, as a
// force-push of the same content would.
func (g *gitRepo) rewrite(ctx context.Context, msg string) (string, error) {
	id, err := g.run(ctx, nil, "commit-tree", "refs/heads/main^{tree}", "-m", msg)
	if err != nil {
		return "", err
	}
	if _, err := g.run(ctx, nil, "update-ref", "-m", msg, "refs/heads/main", id); err != nil {
		return "", err
	}
	g.commits++
	return id, nil
}

// maxGitRequest bounds the request body buffered for http-backend; upload
// pack negotiations of an index this size are far smaller.
const maxGitRequest = 64 << 20

// gitHandler serves the repositories under projectRoot read-only through
// `git http-backend`, mounted at /git (so <root>/index is /git/index).
func gitHandler(gitPath, projectRoot string, env []string, logw io.Writer) http.Handler {
	h := &cgi.Handler{
		Path: gitPath,
		Args: []string{"http-backend"},
		Root: "/git",
		Dir:  projectRoot,
		Env: append(append([]string(nil), env...),
			"GIT_PROJECT_ROOT="+projectRoot,
			"GIT_HTTP_EXPORT_ALL=1",
		),
		Logger: log.New(logw, "git http-backend: ", 0),
		Stderr: logw,
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/git-receive-pack") || r.URL.Query().Get("service") == "git-receive-pack" {
			http.Error(w, "read-only index", http.StatusForbidden)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodPost {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		// net/http/cgi refuses chunked bodies, which git sends for large
		// negotiations, so hand it a buffered body with a known length.
		if r.Body != nil && r.ContentLength < 0 {
			body, err := io.ReadAll(io.LimitReader(r.Body, maxGitRequest+1))
			if err != nil {
				http.Error(w, "read request: "+err.Error(), http.StatusBadRequest)
				return
			}
			if len(body) > maxGitRequest {
				http.Error(w, "request too large", http.StatusRequestEntityTooLarge)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
			r.TransferEncoding = nil
		}
		h.ServeHTTP(w, r)
	})
}
