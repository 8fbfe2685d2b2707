// Package gitrepo runs the system git on local repositories the way the
// index mirror needs it: a scrubbed environment (no user or system config,
// no prompts), a timeout per command that kills git's whole process group,
// bounded stderr kept for errors, and the lock files a killed command
// leaves removed. It knows nothing about the index.
package gitrepo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Options configures a Runner.
type Options struct {
	// Path is the git to run; "" finds git on PATH.
	Path string
	// Timeout bounds each command; it must be positive.
	Timeout time.Duration
	// DefaultBranch is the branch "git init" creates.
	DefaultBranch string
	// LockFiles are the paths under .git that a command killed on timeout
	// may leave behind; they are removed after such a kill, since only one
	// command of ours changes a repository at a time.
	LockFiles []string
	Logger    zerolog.Logger
	// OnRun, if set (tests), sees the arguments of every command.
	OnRun func(args []string)
}

// Runner runs git commands. It is safe for concurrent use.
type Runner struct {
	path     string
	opts     Options
	baseArgs []string
}

// New prepares a Runner; it fails when git cannot be found.
func New(opts Options) (*Runner, error) {
	if opts.Timeout <= 0 {
		return nil, errors.New("gitrepo: Options.Timeout must be positive")
	}
	path := opts.Path
	if path == "" {
		var err error
		if path, err = exec.LookPath("git"); err != nil {
			return nil, fmt.Errorf("git is required: %w", err)
		}
	}
	// Stable, unquoted path output, and no background maintenance that
	// would outlive the command (and its timeout) or race the next one.
	base := []string{
		"-c", "core.quotepath=false",
		"-c", "gc.autoDetach=false",
		"-c", "maintenance.autoDetach=false",
		"-c", "advice.detachedHead=false",
	}
	if opts.DefaultBranch != "" {
		base = append(base, "-c", "init.defaultBranch="+opts.DefaultBranch)
	}
	return &Runner{path: path, opts: opts, baseArgs: base}, nil
}

// Env is the environment every git command runs with. It replaces the
// process environment rather than extending it, so a user's GIT_DIR,
// GIT_CONFIG_*, credential helpers or global/system config never change
// what git does here, and git never stops to ask for a password.
func Env() []string {
	env := []string{
		"GIT_TERMINAL_PROMPT=0",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=" + os.DevNull,
		"HOME=" + os.DevNull,
		"LC_ALL=C",
		"GIT_ASKPASS=true",
		"SSH_ASKPASS=true",
	}
	// Keep only what git needs to find itself and reach the network.
	for _, k := range []string{"PATH", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR",
		"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// Error carries git's stderr so a failure says why.
type Error struct {
	Args   []string
	Err    error
	Stderr string
}

func (e *Error) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if len(msg) > 2000 {
		msg = msg[:2000] + "..."
	}
	if msg == "" {
		return fmt.Sprintf("git %s: %v", strings.Join(e.Args, " "), e.Err)
	}
	return fmt.Sprintf("git %s: %v: %s", strings.Join(e.Args, " "), e.Err, msg)
}

func (e *Error) Unwrap() error { return e.Err }

// Run runs one git command in dir and returns its stdout. stdin may be nil.
func (r *Runner) Run(ctx context.Context, dir string, stdin []byte, args ...string) ([]byte, error) {
	return r.RunEnv(ctx, dir, nil, stdin, args...)
}

// RunEnv is Run with variables added to git's environment (credentials
// go there, never on the command line, which errors and logs show).
func (r *Runner) RunEnv(ctx context.Context, dir string, env []string, stdin []byte, args ...string) ([]byte, error) {
	if r.opts.OnRun != nil {
		r.opts.OnRun(args)
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.path, append(append([]string(nil), r.baseArgs...), args...)...)
	cmd.Dir = dir
	cmd.Env = append(Env(), env...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &limitedBuffer{buf: &stderr, max: 64 << 10}
	killGroup(cmd)
	// Children (remote helpers) may keep the pipes open after git is
	// killed; do not wait for them forever.
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	r.opts.Logger.Debug().Strs("args", args).Dur("duration_ms", time.Since(start)).Err(err).Msg("git")
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
			removeLocks(dir, r.opts.LockFiles)
		}
		return stdout.Bytes(), &Error{Args: args, Err: err, Stderr: stderr.String()}
	}
	return stdout.Bytes(), nil
}

// removeLocks removes the lock files (paths under dir/.git) that exist.
func removeLocks(dir string, lockFiles []string) {
	for _, f := range lockFiles {
		os.Remove(filepath.Join(dir, ".git", filepath.FromSlash(f)))
	}
}

// Commit is the id of the commit rev names in the repository at dir.
func (r *Runner) Commit(ctx context.Context, dir, rev string) (string, error) {
	return r.objectID(ctx, dir, rev, "commit")
}

// Tree is the id of the tree of the commit rev names.
func (r *Runner) Tree(ctx context.Context, dir, rev string) (string, error) {
	return r.objectID(ctx, dir, rev, "tree")
}

func (r *Runner) objectID(ctx context.Context, dir, rev, kind string) (string, error) {
	out, err := r.Run(ctx, dir, nil, "rev-parse", "--verify", "--quiet", rev+"^{"+kind+"}")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// HasCommit reports whether the repository at dir holds commit.
func (r *Runner) HasCommit(ctx context.Context, dir, commit string) bool {
	_, err := r.Commit(ctx, dir, commit)
	return err == nil
}

// IsAncestor reports whether old is an ancestor of next (a fast-forward)
// in the repository at dir.
func (r *Runner) IsAncestor(ctx context.Context, dir, old, next string) (bool, error) {
	_, err := r.Run(ctx, dir, nil, "merge-base", "--is-ancestor", old, next)
	if err == nil {
		return true, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 {
		return false, nil
	}
	return false, err
}

// limitedBuffer keeps the first max bytes written and drops the rest, so a
// chatty git cannot grow memory without bound.
type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		if len(p) > room {
			b.buf.Write(p[:room])
		} else {
			b.buf.Write(p)
		}
	}
	return len(p), nil
}
