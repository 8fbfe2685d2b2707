package indexsync

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Two processes syncing one mirror (a server and a `sync` command) take
// turns: one holding the lock makes the other wait, not run git beside it.
func TestSyncWaitsForAnotherSyncer(t *testing.T) {
	ctx := ctxT(t)
	up := startUpstream(t, smallIndex(t))
	first := newTestMirror(t, up.IndexURL(), nil)
	if _, err := first.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	second, err := New(first.opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Index.AddVersion(ctx, "alice/foo", "0.6.0", nil); err != nil {
		t.Fatal(err)
	}

	unlock, err := lockSync(ctx, first.Dir(), first.log)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = second.Sync(short)
	cancel()
	// Unlocked, this sync takes well under 300ms against a local upstream.
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("sync while another holds the lock: err = %v, want it to wait until its deadline", err)
	}
	if st := second.Status(); st.Commit != first.Status().Commit {
		t.Fatalf("the waiting sync moved the mirror: %s vs %s", st.Commit, first.Status().Commit)
	}
	unlock()

	c, err := second.Sync(ctx)
	if err != nil {
		t.Fatalf("sync after the lock was released: %v", err)
	}
	if len(c.Added) != 1 || c.Added[0].Version != "0.6.0" {
		t.Errorf("changes = %+v, want alice/foo@0.6.0 added", c)
	}
}

// A sync by another process (here: a second Mirror on the same directory)
// is seen by this one's next lookup, though its parsed-file cache held the
// module from before.
func TestLookupsSeeAnotherProcessesSync(t *testing.T) {
	t.Parallel()
	ctx, server, command := syncElsewhere(t, lookup)
	if ok, err := lookup(ctx, server); err != nil || !ok {
		t.Fatalf("after another process synced: ok=%v err=%v, want the new version", ok, err)
	}
	if server.Status().Commit != command.Status().Commit {
		t.Errorf("commit %s, want %s", server.Status().Commit, command.Status().Commit)
	}
}

// An archive hit's lookup (RecentChecksum) may lag another process's sync
// by up to refCheckInterval, but never past a git request to the endpoint:
// Freshen looks at main first, so a client that pulled the new index gets
// hits checked against it.
func TestFreshenAdoptsAnotherProcessesSync(t *testing.T) {
	t.Parallel()
	ctx, server, _ := syncElsewhere(t, recentChecksum)
	server.Freshen(ctx)
	if ok, err := recentChecksum(ctx, server); err != nil || !ok {
		t.Fatalf("after another process synced and a client asked for the index: ok=%v err=%v, want the new version", ok, err)
	}
}

// lookup and recentChecksum ask m whether alice/foo@0.7.0 is in the index.
func lookup(ctx context.Context, m *Mirror) (bool, error) {
	_, ok, err := m.Lookups().Lookup(ctx, "alice/foo", "0.7.0")
	return ok, err
}

func recentChecksum(ctx context.Context, m *Mirror) (bool, error) {
	_, ok, err := m.Lookups().RecentChecksum(ctx, "alice/foo", "0.7.0")
	return ok, err
}

// syncElsewhere syncs a mirror (server), checks with look that
// alice/foo@0.7.0 is not in it, publishes that version upstream and has a
// second Mirror on the same directory (command, another process) sync it.
func syncElsewhere(t *testing.T, look func(context.Context, *Mirror) (bool, error)) (ctx context.Context, server, command *Mirror) {
	t.Helper()
	ctx = ctxT(t)
	up := startUpstream(t, smallIndex(t))
	server = newTestMirror(t, up.IndexURL(), nil)
	if _, err := server.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := look(ctx, server); err != nil || ok {
		t.Fatalf("0.7.0 before it exists: ok=%v err=%v", ok, err)
	}
	if err := up.Index.AddVersion(ctx, "alice/foo", "0.7.0", nil); err != nil {
		t.Fatal(err)
	}
	command, err := New(server.opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := command.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	return ctx, server, command
}
