package indexsync

import (
	"moonbit-registry/gitrepo"
)

// lockFiles are the lock files a git command killed mid-way (by us, a
// crash, a power loss) may leave in the mirror. Only one git command of
// ours changes the mirror at a time (Sync is single-flight, and processes
// share a lock), so without it running they are known stale and would
// otherwise fail every later sync.
var lockFiles = []string{"index.lock", "shallow.lock", "HEAD.lock", "config.lock",
	"packed-refs.lock", "FETCH_HEAD.lock", "refs/heads/" + localBranch + ".lock", upstreamRef + ".lock"}

// newGit is the git runner of a mirror with these options; onRun, if set,
// sees every command's arguments.
func newGit(opts Options, onRun func([]string)) (*gitrepo.Runner, error) {
	return gitrepo.New(gitrepo.Options{
		Timeout:       opts.GitTimeout,
		DefaultBranch: localBranch,
		LockFiles:     lockFiles,
		Logger:        opts.Logger.With().Str("component", "indexsync").Logger(),
		OnRun:         onRun,
	})
}
