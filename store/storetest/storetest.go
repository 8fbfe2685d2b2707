// Package storetest is the compliance suite every archive backend runs:
// one Run(t, newStore) that checks the store.Store contract through
// store.PutVerified, the way the archive pipeline uses it. A backend that
// passes can stand in for any other.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"moonbit-registry/module"
	"moonbit-registry/store"
)

// Harness is what a backend gives the suite besides the store itself.
type Harness struct {
	// Store is a new, empty store.
	Store store.Store
	// AddStray puts something into the store's namespace that is not an
	// archive (a temporary file, a stray object, a name that only decodes
	// to an archive's), so the suite can check Walk skips it. Nil skips
	// that check.
	AddStray func(t *testing.T)
}

// Run checks the contract on fresh stores made by newStore (one per
// subtest).
func Run(t *testing.T, newStore func(t *testing.T) Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"RoundTrip", testRoundTrip},
		{"LargeRoundTrip", testLargeRoundTrip},
		{"ReplaceKeepsNewChecksum", testReplace},
		{"WrongChecksumStoresNothing", testWrongChecksum},
		{"CutReaderStoresNothing", testCutReader},
		{"NothingVisibleBeforeCommit", testNothingVisibleBeforeCommit},
		{"AbortStoresNothing", testAbort},
		{"ConcurrentWritersOneGoodObject", testConcurrentWriters},
		{"NotExist", testNotExist},
		{"HostileNamesRefused", testHostileNames},
		{"WalkCompleteSkipsStrays", testWalk},
		{"CancelMidWrite", testCancelMidWrite},
		{"Ping", testPing},
		{"Capabilities", testCapabilities},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}

// Archives the suite writes: nested names, emoji, build metadata, CJK.
var (
	plain  = module.Version{Module: "moonbitlang/lex/runtime", Version: "0.1.0"}
	camel  = module.Version{Module: "illusory0x0/🐫", Version: "0.1.2+3"}
	chines = module.Version{Module: "CAIMEOX/原来可以发中文包", Version: "0.1.0"}
)

// Body is a deterministic stand-in for mv's archive, large enough to
// span many writes.
func Body(mv module.Version) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < 256<<10; i++ {
		fmt.Fprintf(&b, "%s block %d\n", mv, i)
	}
	return b.Bytes()
}

// Sum is the lowercase hex SHA-256 of b.
func Sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func put(t *testing.T, s store.Store, mv module.Version, b []byte) {
	t.Helper()
	n, err := store.PutVerified(ctx(t), s, mv, bytes.NewReader(b), store.Meta{SHA256: Sum(b), Size: int64(len(b))})
	if err != nil || n != int64(len(b)) {
		t.Fatalf("PutVerified(%s) = %d, %v", mv, n, err)
	}
}

// expect checks that mv is stored with exactly b and its checksum.
func expect(t *testing.T, s store.Store, mv module.Version, b []byte) {
	t.Helper()
	obj, err := s.Open(ctx(t), mv)
	if err != nil {
		t.Fatalf("Open(%s): %v", mv, err)
	}
	defer obj.Close()
	info := obj.Info()
	if info.Size != int64(len(b)) || info.SHA256 != Sum(b) || info.ModTime.IsZero() {
		t.Errorf("Open(%s).Info() = %+v, want size %d, sha256 %s and a modification time", mv, info, len(b), Sum(b))
	}
	got, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(got, b) {
		t.Errorf("Open(%s): read %d bytes, %v; want the %d stored", mv, len(got), err, len(b))
	}
	if st, ok := s.(store.Statter); ok {
		si, err := st.Stat(ctx(t), mv)
		if err != nil || si.Size != info.Size || si.SHA256 != info.SHA256 || !si.ModTime.Equal(info.ModTime) {
			t.Errorf("Stat(%s) = %+v, %v; want what Open says, %+v", mv, si, err, info)
		}
	}
}

func expectMissing(t *testing.T, s store.Store, mv module.Version) {
	t.Helper()
	obj, err := s.Open(ctx(t), mv)
	if err == nil {
		obj.Close()
		t.Fatalf("Open(%s) found an archive, want none", mv)
	}
	if !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("Open(%s) = %v, want ErrNotExist", mv, err)
	}
	if st, ok := s.(store.Statter); ok {
		if _, err := st.Stat(ctx(t), mv); !errors.Is(err, store.ErrNotExist) {
			t.Fatalf("Stat(%s) = %v, want ErrNotExist", mv, err)
		}
	}
}

func testRoundTrip(t *testing.T, h Harness) {
	for _, mv := range []module.Version{plain, camel, chines} {
		b := Body(mv)
		put(t, h.Store, mv, b)
		expect(t, h.Store, mv, b)
	}
	// Seeking is optional; where offered it must work (Range requests).
	obj, err := h.Store.Open(ctx(t), plain)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if sk, ok := obj.(io.Seeker); ok {
		want := Body(plain)[1000:1010]
		if _, err := sk.Seek(1000, io.SeekStart); err != nil {
			t.Fatalf("Seek: %v", err)
		}
		got := make([]byte, 10)
		if _, err := io.ReadFull(obj, got); err != nil || !bytes.Equal(got, want) {
			t.Errorf("after Seek(1000): %q, %v; want %q", got, err, want)
		}
	}
}

// testLargeRoundTrip stores archives of several MiB, of known and unknown
// length: the sizes at which PutVerified hashes beside the copy and a
// backend may write in parts or start writing out early.
func testLargeRoundTrip(t *testing.T, h Harness) {
	b := bytes.Repeat(Body(camel), 21)[:5<<20+12345]
	for _, size := range []int64{int64(len(b)), -1} {
		n, err := store.PutVerified(ctx(t), h.Store, camel, bytes.NewReader(b), store.Meta{SHA256: Sum(b), Size: size})
		if err != nil || n != int64(len(b)) {
			t.Fatalf("PutVerified of %d bytes (announced %d) = %d, %v", len(b), size, n, err)
		}
		expect(t, h.Store, camel, b)
		b = b[:len(b)-1000]
	}
}

func testReplace(t *testing.T, h Harness) {
	// An index that changes a version's checksum makes the pipeline store
	// other bytes under the same name: the new checksum must travel with
	// the new bytes.
	put(t, h.Store, plain, Body(plain))
	other := Body(camel)
	put(t, h.Store, plain, other)
	expect(t, h.Store, plain, other)
}

func testWrongChecksum(t *testing.T, h Harness) {
	b := Body(plain)
	_, err := store.PutVerified(ctx(t), h.Store, plain, bytes.NewReader(b), store.Meta{SHA256: Sum([]byte("other")), Size: -1})
	var ce *store.ChecksumError
	if !errors.As(err, &ce) || !errors.Is(err, store.ErrChecksumMismatch) || ce.Actual != Sum(b) {
		t.Fatalf("PutVerified with a wrong checksum = %v, want a *ChecksumError naming %s", err, Sum(b))
	}
	expectMissing(t, h.Store, plain)
	// A checksum that is not one is refused before anything is written.
	if _, err := store.PutVerified(ctx(t), h.Store, plain, bytes.NewReader(b), store.Meta{SHA256: "ABC", Size: -1}); err == nil {
		t.Error("PutVerified accepted a malformed checksum")
	}
	expectMissing(t, h.Store, plain)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func testCutReader(t *testing.T, h Harness) {
	b := Body(plain)
	boom := errors.New("connection reset mid-body")
	for _, size := range []int64{-1, int64(len(b))} {
		r := io.MultiReader(bytes.NewReader(b[:len(b)/2]), errReader{boom})
		_, err := store.PutVerified(ctx(t), h.Store, plain, r, store.Meta{SHA256: Sum(b), Size: size})
		if !errors.Is(err, boom) {
			t.Fatalf("PutVerified (size %d) with a reader cut short = %v, want the reader's error", size, err)
		}
		expectMissing(t, h.Store, plain)
	}
	// A reader that ends early without an error is a mismatch.
	if _, err := store.PutVerified(ctx(t), h.Store, plain, bytes.NewReader(b[:len(b)/2]), store.Meta{SHA256: Sum(b), Size: -1}); !errors.Is(err, store.ErrChecksumMismatch) {
		t.Fatalf("PutVerified with a short body = %v, want ErrChecksumMismatch", err)
	}
	expectMissing(t, h.Store, plain)
}

func testNothingVisibleBeforeCommit(t *testing.T, h Harness) {
	b := Body(plain)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := store.PutVerified(ctx(t), h.Store, plain, pr, store.Meta{SHA256: Sum(b), Size: int64(len(b))})
		done <- err
	}()
	if _, err := pw.Write(b[:len(b)/2]); err != nil {
		t.Fatal(err)
	}
	expectMissing(t, h.Store, plain)
	if names := walkNames(t, h.Store); len(names) != 0 {
		t.Errorf("Walk during a write = %v, want nothing", names)
	}
	pw.Write(b[len(b)/2:])
	pw.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("PutVerified did not finish")
	}
	expect(t, h.Store, plain, b)
}

func testAbort(t *testing.T, h Harness) {
	b := Body(plain)
	w, err := h.Store.Create(ctx(t), plain, store.Meta{SHA256: Sum(b), Size: int64(len(b))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	expectMissing(t, h.Store, plain)
	if err := w.Commit(ctx(t)); err == nil {
		t.Error("Commit after Abort succeeded")
	}
	expectMissing(t, h.Store, plain)
	// After a Commit, Abort changes nothing.
	w, err = h.Store.Create(ctx(t), plain, store.Meta{SHA256: Sum(b), Size: int64(len(b))})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	if err := w.Commit(ctx(t)); err != nil {
		t.Fatal(err)
	}
	w.Abort()
	expect(t, h.Store, plain, b)
}

func testConcurrentWriters(t *testing.T, h Harness) {
	b := Body(plain)
	const writers = 8
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = store.PutVerified(ctx(t), h.Store, plain, bytes.NewReader(b), store.Meta{SHA256: Sum(b), Size: int64(len(b))})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	expect(t, h.Store, plain, b)
	if names := walkNames(t, h.Store); !slices.Equal(names, []string{plain.String()}) {
		t.Errorf("Walk after concurrent writers = %v, want one archive", names)
	}
}

func testNotExist(t *testing.T, h Harness) {
	expectMissing(t, h.Store, plain)
	if err := h.Store.Delete(ctx(t), plain); !errors.Is(err, store.ErrNotExist) {
		t.Errorf("Delete of a missing archive = %v, want ErrNotExist", err)
	}
	put(t, h.Store, plain, Body(plain))
	if err := h.Store.Delete(ctx(t), plain); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	expectMissing(t, h.Store, plain)
	if err := h.Store.Delete(ctx(t), plain); !errors.Is(err, store.ErrNotExist) {
		t.Errorf("second Delete = %v, want ErrNotExist", err)
	}
	if names := walkNames(t, h.Store); len(names) != 0 {
		t.Errorf("Walk after Delete = %v, want nothing", names)
	}
}

func testHostileNames(t *testing.T, h Harness) {
	b := Body(plain)
	for _, mv := range []module.Version{
		{Module: "a/..", Version: "1.0.0"},
		{Module: "../etc/passwd", Version: "1.0.0"},
		{Module: "a/b", Version: "../../1.0.0"},
		{Module: ".tmp/x", Version: "1.0.0"},
		{Module: "a/b\x00c", Version: "1.0.0"},
		{Module: "a", Version: "1.0.0"},
		{Module: "a/b", Version: "1.0"},
	} {
		if _, err := h.Store.Open(ctx(t), mv); !errors.Is(err, module.ErrBadName) {
			t.Errorf("Open(%q) = %v, want ErrBadName", mv, err)
		}
		if _, err := h.Store.Create(ctx(t), mv, store.Meta{SHA256: Sum(b), Size: -1}); !errors.Is(err, module.ErrBadName) {
			t.Errorf("Create(%q) = %v, want ErrBadName", mv, err)
		}
		if err := h.Store.Delete(ctx(t), mv); !errors.Is(err, module.ErrBadName) {
			t.Errorf("Delete(%q) = %v, want ErrBadName", mv, err)
		}
	}
	if names := walkNames(t, h.Store); len(names) != 0 {
		t.Errorf("Walk after hostile names = %v, want nothing", names)
	}
}

func walkNames(t *testing.T, s store.Store) []string {
	t.Helper()
	var names []string
	if err := s.Walk(ctx(t), func(mv module.Version) error {
		names = append(names, mv.String())
		return nil
	}); err != nil {
		t.Fatalf("Walk: %v", err)
	}
	slices.Sort(names)
	return names
}

func testWalk(t *testing.T, h Harness) {
	var want []string
	for i := range 20 {
		mv := module.Version{Module: fmt.Sprintf("walk/m%d/sub", i%7), Version: fmt.Sprintf("0.%d.0", i)}
		put(t, h.Store, mv, []byte(mv.String()))
		want = append(want, mv.String())
	}
	if h.AddStray != nil {
		h.AddStray(t)
	}
	slices.Sort(want)
	if got := walkNames(t, h.Store); !slices.Equal(got, want) {
		t.Errorf("Walk = %v\nwant %v", got, want)
	}
	stop := errors.New("stop")
	calls := 0
	err := h.Store.Walk(ctx(t), func(module.Version) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Walk with fn failing: %v after %d calls, want fn's error after 1", err, calls)
	}
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.Store.Walk(c, func(module.Version) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Walk with a cancelled context = %v, want context.Canceled", err)
	}
}

// blockingReader hands out half the body, then waits for its context.
type blockingReader struct {
	ctx  context.Context
	half []byte
	sent bool
	read chan struct{}
}

func (r *blockingReader) Read(p []byte) (int, error) {
	if !r.sent {
		r.sent = true
		n := copy(p, r.half)
		r.half = r.half[n:]
		if len(r.half) > 0 {
			r.sent = false
		} else {
			close(r.read)
		}
		return n, nil
	}
	<-r.ctx.Done()
	return 0, r.ctx.Err()
}

func testCancelMidWrite(t *testing.T, h Harness) {
	b := Body(plain)
	c, cancel := context.WithCancel(context.Background())
	r := &blockingReader{ctx: c, half: b[:len(b)/2], read: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := store.PutVerified(c, h.Store, plain, r, store.Meta{SHA256: Sum(b), Size: int64(len(b))})
		done <- err
	}()
	<-r.read
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("PutVerified cancelled mid-write = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("PutVerified did not return after its context was cancelled")
	}
	expectMissing(t, h.Store, plain)
	// The name is free for the next writer.
	put(t, h.Store, plain, b)
	expect(t, h.Store, plain, b)
}

func testPing(t *testing.T, h Harness) {
	if err := h.Store.Ping(ctx(t)); err != nil {
		t.Errorf("Ping of a fresh store: %v", err)
	}
}

// testCapabilities checks the optional capabilities a backend has (see
// store's list; Statter is checked with every lookup above).
func testCapabilities(t *testing.T, h Harness) {
	s := h.Store
	if b, ok := s.(store.Batcher); ok {
		bctx, finish := b.Batch(ctx(t))
		body := Body(plain)
		if _, err := store.PutVerified(bctx, s, plain, bytes.NewReader(body), store.Meta{SHA256: Sum(body), Size: int64(len(body))}); err != nil {
			t.Fatalf("PutVerified in a batch: %v", err)
		}
		if err := finish(); err != nil {
			t.Errorf("finishing a batch: %v", err)
		}
		expect(t, s, plain, body)
	}
	if u, ok := s.(store.UsageReporter); ok {
		before := u.Usage()
		body := Body(chines)
		put(t, s, chines, body)
		// A store counts its size only where it needs to (the disk
		// store with a size limit); one that counts counts right.
		if after := u.Usage(); after != (store.Usage{}) && (after.Files != before.Files+1 || after.Bytes < before.Bytes+int64(len(body))) {
			t.Errorf("Usage after one more archive of %d bytes: %+v, before %+v", len(body), after, before)
		}
	}
	if hd, ok := s.(store.Holder); ok {
		release := hd.Hold(camel)
		body := Body(camel)
		put(t, s, camel, body)
		expect(t, s, camel, body)
		release()
		release() // a second release does nothing
	}
	if p, ok := s.(store.Presigner); ok {
		body := Body(camel)
		put(t, s, camel, body)
		if u, err := p.PresignGet(ctx(t), camel); err != nil || u == "" {
			t.Errorf("PresignGet(%s) = %q, %v", camel, u, err)
		}
	}
}
