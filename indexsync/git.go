package indexsync

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// gitEnv is the environment every git command runs with. It replaces the
// process environment rather than extending it, so a user's GIT_DIR,
// GIT_CONFIG_*, credential helpers or global/system config never change
// what the mirror does, and git never stops to ask for a password.
func gitEnv() []string {
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

// baseArgs come before every git subcommand: stable, unquoted path output,
// and no background maintenance that would outlive the command (and its
// timeout) or race the next sync.
var baseArgs = []string{
	"-c", "core.quotepath=false",
	"-c", "gc.autoDetach=false",
	"-c", "maintenance.autoDetach=false",
	"-c", "advice.detachedHead=false",
	"-c", "init.defaultBranch=" + localBranch,
}

// gitError carries git's stderr so a failed sync says why.
type gitError struct {
	args   []string
	err    error
	stderr string
}

func (e *gitError) Error() string {
	msg := strings.TrimSpace(e.stderr)
	if len(msg) > 2000 {
		msg = msg[:2000] + "..."
	}
	if msg == "" {
		return fmt.Sprintf("git %s: %v", strings.Join(e.args, " "), e.err)
	}
	return fmt.Sprintf("git %s: %v: %s", strings.Join(e.args, " "), e.err, msg)
}

func (e *gitError) Unwrap() error { return e.err }

// git runs one git command in dir with the mirror's timeout and returns its
// stdout. stdin may be nil.
func (m *Mirror) git(ctx context.Context, dir string, stdin []byte, args ...string) ([]byte, error) {
	return m.gitWith(ctx, dir, nil, stdin, args...)
}

// gitWith is git with variables added to its environment.
func (m *Mirror) gitWith(ctx context.Context, dir string, env []string, stdin []byte, args ...string) ([]byte, error) {
	if m.onGit != nil {
		m.onGit(args)
	}
	ctx, cancel := context.WithTimeout(ctx, m.opts.GitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, m.gitPath, append(append([]string(nil), baseArgs...), args...)...)
	cmd.Dir = dir
	cmd.Env = append(gitEnv(), env...)
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
	m.log.Debug().Strs("args", args).Dur("duration_ms", time.Since(start)).Err(err).Msg("git")
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
			removeLocks(dir)
		}
		return stdout.Bytes(), &gitError{args: args, err: err, stderr: stderr.String()}
	}
	return stdout.Bytes(), nil
}

// lockFiles are the lock files a git command killed mid-way (by us, a
// crash, a power loss) may leave in the mirror. Only one git command of
// ours changes the mirror at a time (Sync is single-flight, and processes
// share a lock), so without it running they are known stale and would
// otherwise fail every later sync.
var lockFiles = []string{"index.lock", "shallow.lock", "HEAD.lock", "config.lock",
	"packed-refs.lock", "FETCH_HEAD.lock", "refs/heads/" + localBranch + ".lock", upstreamRef + ".lock"}

func removeLocks(dir string) {
	for _, f := range lockFiles {
		os.Remove(filepath.Join(dir, ".git", filepath.FromSlash(f)))
	}
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
