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
//
// The parts, each in its own file:
//   - Mirror (mirror.go, sync.go, run.go, repair.go): clone, fetch, move
//     main, the cross-process lock, repair; git itself runs through
//     package gitrepo.
//   - Lookups (reader.go, outside.go): modules and versions read from the
//     work tree, with an LRU of parsed files.
//   - composer (compose.go): the served commit built from upstream's,
//     the sources' and the Overlay's files.
//   - agreement (fleet.go): the commit a fleet of replicas agrees on.
//   - flights, looks, state: one sync shared by its callers, the looks at
//     upstream's tip (Freshen), the commit and the record of syncs.
//
// Which versions a mirror or verify run covers is package resolve's.
package indexsync
