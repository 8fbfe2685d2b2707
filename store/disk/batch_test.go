package disk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"moonbit-registry/module"
	"moonbit-registry/store"
	"moonbit-registry/store/storetest"
)

// TestBatch: archives committed under a batch are visible at once, their
// directories are owed to flush (at most the batch's limit of them at any
// time), and flush pays the debt; a directory gone meanwhile owes nothing.
func TestBatch(t *testing.T) {
	s, root := newStore(t)
	ctx, flush := s.Batch(context.Background())
	b := ctx.Value(batchKey{s}).(*dirBatch)
	b.limit = 8
	var stored []module.Version
	for i := range 10 {
		mv := module.Version{Module: fmt.Sprintf("owner%d/mod", i), Version: "1.0.0"}
		body := storetest.Body(mv)
		if _, err := store.PutVerified(ctx, s, mv, bytes.NewReader(body), store.Meta{SHA256: storetest.Sum(body), Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		stored = append(stored, mv)
		obj, err := s.Open(context.Background(), mv)
		if err != nil {
			t.Fatalf("%s not visible before the flush: %v", mv, err)
		}
		obj.Close()
		if n := len(b.dirs); n == 0 || n > b.limit+3 {
			t.Fatalf("after %d commits the batch owes %d directories, want 1 to %d", i+1, n, b.limit+3)
		}
	}
	// The batch filled up (10 archives, 3 directories each, root shared)
	// and flushed part way: what it owes now is the last few archives'.
	if _, ok := b.dirs[filepath.Join(root, "owner9", "mod")]; !ok {
		t.Errorf("the last archive's directory is not owed: %v", b.dirs)
	}
	if _, ok := b.dirs[filepath.Join(root, "owner0", "mod")]; ok {
		t.Errorf("the first archive's directory is still owed after the batch filled up")
	}
	if err := os.RemoveAll(filepath.Join(root, "owner9")); err != nil {
		t.Fatal(err)
	}
	if err := flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if len(b.dirs) != 0 {
		t.Errorf("after the flush the batch still owes %v", b.dirs)
	}
	// A batch owing many directories pays with one syncfs.
	ctx, flush = s.Batch(context.Background())
	b = ctx.Value(batchKey{s}).(*dirBatch)
	for i := range syncfsFrom / 2 {
		mv := module.Version{Module: fmt.Sprintf("many%d/mod", i), Version: "1.0.0"}
		body := storetest.Body(mv)
		if _, err := store.PutVerified(ctx, s, mv, bytes.NewReader(body), store.Meta{SHA256: storetest.Sum(body), Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(b.dirs); n < syncfsFrom {
		t.Fatalf("the batch owes %d directories, want at least %d", n, syncfsFrom)
	}
	if err := flush(); err != nil || len(b.dirs) != 0 {
		t.Fatalf("flush: %v, still owed %d", err, len(b.dirs))
	}
	// Without a batch, commits owe nothing to anyone.
	if _, err := store.PutVerified(context.Background(), s, lexRuntime, bytes.NewReader([]byte("x")), store.Meta{SHA256: storetest.Sum([]byte("x")), Size: 1}); err != nil {
		t.Fatal(err)
	}
	if len(b.dirs) != 0 {
		t.Errorf("a commit outside the batch was added to it")
	}
}

// TestBatchFlushFailure: once a flush fails, commits of the batch sync
// their own directories again, and the final flush reports what is still
// owed.
func TestBatchFlushFailure(t *testing.T) {
	s, root := newStore(t)
	ctx, flush := s.Batch(context.Background())
	b := ctx.Value(batchKey{s}).(*dirBatch)
	b.limit = 4
	// A directory whose fsync fails: a file where a directory should be.
	notDir := filepath.Join(root, "not-a-dir")
	if err := os.WriteFile(notDir, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.dirs[notDir] = struct{}{}
	for i := range 4 {
		mv := module.Version{Module: fmt.Sprintf("fail%d/mod", i), Version: "1.0.0"}
		body := storetest.Body(mv)
		if _, err := store.PutVerified(ctx, s, mv, bytes.NewReader(body), store.Meta{SHA256: storetest.Sum(body), Size: int64(len(body))}); err != nil {
			t.Fatalf("commit %d after the batch failed: %v (it syncs for itself)", i, err)
		}
	}
	if !b.failed {
		t.Fatal("the batch filled up and its flush failed, but it is not marked failed")
	}
	if _, ok := b.dirs[filepath.Join(root, "fail3", "mod")]; ok {
		t.Error("a commit after the failure was deferred to the failed batch")
	}
	if err := flush(); !errors.Is(err, store.ErrWrite) {
		t.Errorf("final flush = %v, want ErrWrite", err)
	}
}
