package disk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"moonbit-registry/internal/testsupport"
	"moonbit-registry/module"
	"moonbit-registry/store"
	"moonbit-registry/store/storetest"
)

// Eviction through the archive pipeline (fetch, serve, fetch again) is
// tested in package cache; these drive the evictor directly.

// evictMV is the i-th test archive. Versions 1..9 have names of equal
// length, so their bodies are all the same size.
func evictMV(i int) module.Version {
	return module.Version{Module: "evict/pkg", Version: fmt.Sprintf("0.%d.0", i)}
}

// evictSize is what every evictMV archive takes on disk (allocated blocks,
// which is what the size limit counts).
var evictSize = sync.OnceValue(func() int64 { return testsupport.StoredSize(storetest.Body(evictMV(1))) })

// roomFor is a limit that holds n archives but not n+1, with n still under
// the 90% low-water mark (so a pass leaves exactly n).
func roomFor(n int) int64 { return int64(n)*evictSize() + evictSize()/2 }

// newEvictStore is a size-limited store whose start-up walk is over.
func newEvictStore(t *testing.T, maxBytes int64) (*Store, string, *testsupport.LogBuffer) {
	t.Helper()
	logs := &testsupport.LogBuffer{}
	root := filepath.Join(t.TempDir(), "packages")
	s, err := New(Options{Root: root, MaxBytes: maxBytes, Logger: zerolog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	<-s.ScanDone()
	return s, root, logs
}

// get opens mv, storing it first if it is missing, as the archive
// pipeline does on a miss, reads it and closes it.
func get(t *testing.T, s *Store, mv module.Version) {
	t.Helper()
	ctx := context.Background()
	obj, err := s.Open(ctx, mv)
	if errors.Is(err, store.ErrNotExist) {
		put(t, s, mv, storetest.Body(mv))
		obj, err = s.Open(ctx, mv)
	}
	if err != nil {
		t.Fatalf("Open %s: %v", mv, err)
	}
	defer obj.Close()
	if b, err := io.ReadAll(obj); err != nil || !bytes.Equal(b, storetest.Body(mv)) {
		t.Fatalf("read %s: %d bytes, %v", mv, len(b), err)
	}
}

// onDisk lists the archives under root and their total size.
func onDisk(t *testing.T, root string) (vs []string, total int64) {
	return testsupport.ArchiveFiles(t, root)
}

func versions(is ...int) []string {
	var out []string
	for _, i := range is {
		out = append(out, evictMV(i).Version)
	}
	slices.Sort(out)
	return out
}

func TestEvictNegativeLimit(t *testing.T) {
	if _, err := New(Options{Root: t.TempDir(), MaxBytes: -1}); err == nil {
		t.Error("New accepted a negative MaxBytes")
	}
}

// TestEvictScanMergesEventsDuringWalk drives the evictor's start-up walk by
// hand, with uses, writes and removals recorded before it finishes, as
// they would be while a big store is still being walked.
func TestEvictScanMergesEventsDuringWalk(t *testing.T) {
	root := filepath.Join(t.TempDir(), "packages")
	s, err := New(Options{Root: root, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	put := func(i int) { put(t, s, evictMV(i), storetest.Body(evictMV(i))) }
	// 1..4 stored earlier, 1 the oldest.
	base := time.Now().Add(-time.Hour)
	for i := 1; i <= 4; i++ {
		put(i)
		at := base.Add(time.Duration(i) * time.Minute)
		if err := s.markUsed(evictMV(i), at); err != nil {
			t.Fatal(err)
		}
	}
	e := newEvictor(s, roomFor(3), 0, zerolog.Nop())
	// Before the walk is over: 5..8 stored (more than the limit on their
	// own), then 1 used, and 2 deleted after the walk would have seen it.
	for i := 5; i <= 8; i++ {
		put(i)
		e.stored(evictMV(i), evictSize())
	}
	e.pin(evictMV(1))()
	e.use(evictMV(1))
	e.removed(evictMV(2))
	e.enforce() // must wait for the walk: the total is not known yet
	if vs, _ := onDisk(t, root); !slices.Equal(vs, versions(1, 2, 3, 4, 5, 6, 7, 8)) {
		t.Fatalf("evicted before the walk was over: disk holds %v", vs)
	}

	e.scan()
	if err := os.Remove(filepath.Join(root, filepath.FromSlash(evictMV(2).RelPath()))); err != nil {
		t.Fatalf("2 was counted and evicted although it had been deleted: %v", err)
	}
	// Counted: 1, 3..8 (not 2), most recent first 1, 8, 7, 6, 5, 4, 3: room
	// for three keeps 1 (thanks to its use), 8 and 7.
	if vs, _ := onDisk(t, root); !slices.Equal(vs, versions(1, 7, 8)) {
		t.Errorf("after the walk: disk holds %v, want %v", vs, versions(1, 7, 8))
	}
	if u := e.usage(); u.Evictions != 4 || u.Bytes != 3*evictSize() || u.Files != 3 {
		t.Errorf("usage after the walk: evictions=%d bytes=%d files=%d, want 4, %d, 3", u.Evictions, u.Bytes, u.Files, 3*evictSize())
	}
}

// TestEvictDeletionFailure: an archive that cannot be deleted (here a
// directory stands where the file was) is logged and skipped, the next
// coldest goes instead, and a store that refuses every deletion costs a
// bounded number of attempts, never a stuck fetch.
func TestEvictDeletionFailure(t *testing.T) {
	undeletable := func(t *testing.T, root string, i int) {
		p := filepath.Join(root, filepath.FromSlash(evictMV(i).RelPath()))
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(p, "blocker"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("one", func(t *testing.T) {
		s, root, logs := newEvictStore(t, roomFor(3))
		for i := 1; i <= 2; i++ {
			get(t, s, evictMV(i))
		}
		undeletable(t, root, 1)
		for i := 3; i <= 4; i++ {
			get(t, s, evictMV(i))
		}
		if vs, _ := onDisk(t, root); !slices.Equal(vs, versions(3, 4)) {
			t.Errorf("archives on disk %v, want %v (2 evicted in place of the undeletable 1)", vs, versions(3, 4))
		}
		failed := logs.Records(t, "evicting archive failed")
		if len(failed) != 1 || failed[0]["archive"] != evictMV(1).String() {
			t.Errorf("failure log records %v, want one for %s", failed, evictMV(1))
		}
		if u := s.Usage(); u.Evictions != 1 {
			t.Errorf("Evictions=%d, want 1", u.Evictions)
		}
	})
	t.Run("all", func(t *testing.T) {
		s, root, logs := newEvictStore(t, roomFor(3))
		for i := 1; i <= 3; i++ {
			get(t, s, evictMV(i))
			undeletable(t, root, i)
		}
		// Stored and served although nothing can be evicted; further
		// requests do not retry before the pause is over.
		get(t, s, evictMV(4))
		get(t, s, evictMV(4))
		if n := len(logs.Records(t, "evicting archive failed")); n != maxEvictFailures {
			t.Errorf("%d failed deletions logged, want %d (one pass, then a pause)", n, maxEvictFailures)
		}
		if n := len(logs.Records(t, "archive eviction paused after repeated failures")); n != 1 {
			t.Errorf("%d pause log records, want 1", n)
		}
		if u := s.Usage(); u.Evictions != 0 {
			t.Errorf("Evictions=%d, want 0", u.Evictions)
		}
	})
}

// The size limit covers what shares it (the pass-through's kept bodies),
// and evicts that first: bodies are fetched again more cheaply.
func TestEvictSharedSpaceFirst(t *testing.T) {
	s, root, _ := newEvictStore(t, roomFor(3))
	bodies, err := NewBodies(filepath.Join(filepath.Dir(root), "http-cache", "bodies"), false, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	bodies.ShareLimit(s.ShareLimit)
	keep := func(key string) {
		w, err := bodies.Create()
		if err != nil {
			t.Fatal(err)
		}
		w.Write(storetest.Body(evictMV(1)))
		if err := w.Commit(key, store.BodyMeta{}); err != nil {
			t.Fatal(err)
		}
	}
	kept := func(key string) bool {
		f, _, err := bodies.Open(key)
		if err == nil {
			f.Close()
		}
		return err == nil
	}
	get(t, s, evictMV(1))
	get(t, s, evictMV(2))
	keep("https://up/symbols.zip")
	keep("https://up/assets/a.wasm") // 4 things in room for 3: the older body goes
	if vs, _ := onDisk(t, root); !slices.Equal(vs, versions(1, 2)) || kept("https://up/symbols.zip") || !kept("https://up/assets/a.wasm") {
		t.Fatalf("archives %v, symbols kept %v, asset kept %v; want both archives and the newer body", vs, kept("https://up/symbols.zip"), kept("https://up/assets/a.wasm"))
	}
	get(t, s, evictMV(3)) // an archive over the limit: the body goes first
	if vs, _ := onDisk(t, root); !slices.Equal(vs, versions(1, 2, 3)) || kept("https://up/assets/a.wasm") || bodies.Bytes() != 0 {
		t.Fatalf("archives %v, asset kept %v, body bytes %d; want three archives and no body", vs, kept("https://up/assets/a.wasm"), bodies.Bytes())
	}
	get(t, s, evictMV(4)) // no body left: the least recently used archive
	if vs, _ := onDisk(t, root); !slices.Equal(vs, versions(2, 3, 4)) {
		t.Fatalf("archives %v, want %v", vs, versions(2, 3, 4))
	}
	// A restart counts what is kept (here, without a limit to share).
	dir := filepath.Join(t.TempDir(), "bodies")
	alone, err := NewBodies(dir, false, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	bodies = alone
	keep("https://up/symbols.zip")
	again, err := NewBodies(dir, false, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if again.Bytes() != evictSize() {
		t.Errorf("bodies counted at start: %d bytes, want %d", again.Bytes(), evictSize())
	}
}

// The response cache of the pass-through (API answers) shares the limit
// the same way: an upstream answering 200 to made-up paths cannot grow the
// data directory past it.
func TestEvictSharedResponsesFirst(t *testing.T) {
	s, root, _ := newEvictStore(t, roomFor(3))
	responses, err := NewResponseCache(filepath.Join(filepath.Dir(root), "http-cache"), false, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	responses.ShareLimit(s.ShareLimit)
	answer := append([]byte("HTTP/1.1 200 OK\r\n\r\n"), storetest.Body(evictMV(1))...)
	for i := range 3 {
		responses.Set(fmt.Sprintf("https://up/api/v0/made-up/%d", i), answer)
	}
	get(t, s, evictMV(1))
	get(t, s, evictMV(2))
	if vs, _ := onDisk(t, root); !slices.Equal(vs, versions(1, 2)) {
		t.Fatalf("archives %v, want both: answers go first", vs)
	}
	if _, ok := responses.Get("https://up/api/v0/made-up/2"); !ok {
		t.Error("the most recent answer was evicted")
	}
	if _, ok := responses.Get("https://up/api/v0/made-up/0"); ok {
		t.Error("the oldest answer was kept over the limit")
	}
	if total := responses.Bytes() + s.Usage().Bytes; total > roomFor(3) {
		t.Errorf("answers and archives take %d bytes, over the limit %d", total, roomFor(3))
	}
}
