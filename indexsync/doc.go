// Package indexsync keeps a local git mirror of the index current and answers
// index lookups.
//
// The mirror is a non-bare git repository (Options.Dir) whose branch "main"
// follows upstream and whose work tree is kept checked out at main, so
// lookups read the .index files directly from disk and the proxy can serve
// the same repository to clients with git http-backend. On its own, the
// first sync is a shallow clone; later syncs fetch only the commits between
// the local tip and upstream, so history a client already holds always
// connects and its "git pull" fast-forwards. As one of a fleet of replicas
// (Options.Fleet) it keeps full history, and main follows the fleet's tip.
package indexsync
