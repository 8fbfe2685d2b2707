package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"moonbit-registry/module"

	"github.com/rs/zerolog"
)

func newStore(t *testing.T) (*LocalStore, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "packages")
	s, err := NewLocalStore(root, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return s, root
}

func TestLocalStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, root := newStore(t)
	mvs := []module.Version{lexRuntime, camel, {Module: "CAIMEOX/原来可以发中文包", Version: "0.1.0"}}
	for _, mv := range mvs {
		b := archiveBytes(mv)
		n, err := s.Put(ctx, mv, bytes.NewReader(b), sha256Hex(b))
		if err != nil || n != int64(len(b)) {
			t.Fatalf("Put(%s) = %d, %v", mv, n, err)
		}
		obj, err := s.Open(ctx, mv)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := obj.Stat()
		if err != nil || fi.Size() != int64(len(b)) {
			t.Errorf("Stat = %v, %v", fi, err)
		}
		if got := readAll(t, obj); !bytes.Equal(got, b) {
			t.Errorf("Open(%s): wrong bytes", mv)
		}
	}

	// Strays and temporary files are not archives.
	os.WriteFile(filepath.Join(root, tempDirName, "put-1.part"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(root, "moonbitlang", "notes.txt"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(root, "moonbitlang", "lex", "runtime", "0.2%2E0.zip"), []byte("x"), 0o644)

	var walked []string
	if err := s.Walk(ctx, func(mv module.Version) error {
		walked = append(walked, mv.String())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, mv := range mvs {
		want = append(want, mv.String())
	}
	slices.Sort(walked)
	slices.Sort(want)
	if !slices.Equal(walked, want) {
		t.Errorf("Walk = %v, want %v", walked, want)
	}

	stop := errors.New("stop")
	if err := s.Walk(ctx, func(module.Version) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("Walk did not return fn's error: %v", err)
	}

	if err := s.Delete(ctx, lexRuntime); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(ctx, lexRuntime); !errors.Is(err, ErrNotExist) {
		t.Errorf("Open after Delete: %v", err)
	}
	if err := s.Delete(ctx, lexRuntime); !errors.Is(err, ErrNotExist) {
		t.Errorf("second Delete: %v", err)
	}
}

func TestLocalStoreRejectsBadInput(t *testing.T) {
	ctx := context.Background()
	s, root := newStore(t)
	bad := module.Version{Module: "a/..", Version: "1.0.0"}
	if _, err := s.Open(ctx, bad); !errors.Is(err, module.ErrBadName) {
		t.Errorf("Open: %v", err)
	}
	if _, err := s.Put(ctx, bad, bytes.NewReader(nil), sha256Hex(nil)); !errors.Is(err, module.ErrBadName) {
		t.Errorf("Put: %v", err)
	}
	if err := s.Delete(ctx, bad); !errors.Is(err, module.ErrBadName) {
		t.Errorf("Delete: %v", err)
	}
	if _, err := s.Put(ctx, lexRuntime, bytes.NewReader(nil), "ABC"); err == nil {
		t.Error("Put accepted a malformed checksum")
	}
	// A failing source leaves nothing behind.
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader([]byte("partial")), errReader{boom})
	if _, err := s.Put(ctx, lexRuntime, r, sha256Hex(nil)); !errors.Is(err, boom) {
		t.Errorf("Put with failing reader: %v, want boom", err)
	}
	if _, err := s.Open(ctx, lexRuntime); !errors.Is(err, ErrNotExist) {
		t.Errorf("Open after failed Put: %v", err)
	}
	if tmp := tempFiles(t, root); len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// A reader never sees an archive while it is being written.
func TestLocalStoreNoPartialReads(t *testing.T) {
	ctx := context.Background()
	s, root := newStore(t)
	b := archiveBytes(lexRuntime)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := s.Put(ctx, lexRuntime, pr, sha256Hex(b))
		done <- err
	}()
	if _, err := pw.Write(b[:len(b)/2]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(ctx, lexRuntime); !errors.Is(err, ErrNotExist) {
		t.Fatalf("Open during Put: %v, want ErrNotExist", err)
	}
	if tmp := tempFiles(t, root); len(tmp) != 1 {
		t.Errorf("temporary files during Put: %v, want one", tmp)
	}
	pw.Write(b[len(b)/2:])
	pw.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Put did not finish")
	}
	obj, err := s.Open(ctx, lexRuntime)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, obj); !bytes.Equal(got, b) {
		t.Error("wrong bytes")
	}
}

func TestLocalStoreRemovesLeftoverTempFiles(t *testing.T) {
	ctx := context.Background()
	s, root := newStore(t)
	b := archiveBytes(lexRuntime)
	if _, err := s.Put(ctx, lexRuntime, bytes.NewReader(b), sha256Hex(b)); err != nil {
		t.Fatal(err)
	}
	// A process that died mid-write leaves these behind.
	for _, name := range []string{"put-123.part", "put-456.part"} {
		if err := os.WriteFile(filepath.Join(root, tempDirName, name), []byte("half an archive"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s2, err := NewLocalStore(root, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if tmp := tempFiles(t, root); len(tmp) != 0 {
		t.Errorf("leftover temporary files survived start-up: %v", tmp)
	}
	obj, err := s2.Open(ctx, lexRuntime)
	if err != nil {
		t.Fatalf("archive lost at start-up: %v", err)
	}
	obj.Close()
}

func TestLocalStoreStartupKeepsLiveWritersTempFiles(t *testing.T) {
	_, root := newStore(t)
	// A second process writing to the same root right now.
	other := exec.Command("sleep", "30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { other.Process.Kill(); other.Wait() }()
	// A process that has exited.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	live := fmt.Sprintf("put-%d-1.part", other.Process.Pid)
	gone := fmt.Sprintf("put-%d-2.part", dead.Process.Pid)
	for _, name := range []string{live, gone} {
		if err := os.WriteFile(filepath.Join(root, tempDirName, name), []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := NewLocalStore(root, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, tempDirName, live)); err != nil {
		t.Errorf("a live writer's temp file was removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, tempDirName, gone)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a dead writer's temp file survived: %v", err)
	}
}

func TestDirWritable(t *testing.T) {
	dir := t.TempDir()
	if err := DirWritable(dir); err != nil {
		t.Errorf("a fresh temp dir: %v", err)
	}
	if err := DirWritable(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing dir: want an error")
	}
	if os.Geteuid() != 0 { // root may write anywhere
		os.Chmod(dir, 0o500)
		defer os.Chmod(dir, 0o700)
		if err := DirWritable(dir); err == nil {
			t.Error("a read-only dir: want an error")
		}
	}
}

func TestLocalStoreWriteFailureIsErrStoreWrite(t *testing.T) {
	ctx := context.Background()
	s, root := newStore(t)
	// The temporary directory replaced by a file: no temp file can be made,
	// as when the disk is full or read-only.
	tmp := filepath.Join(root, tempDirName)
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmp, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	b := archiveBytes(lexRuntime)
	_, err := s.Put(ctx, lexRuntime, bytes.NewReader(b), sha256Hex(b))
	if !errors.Is(err, ErrStoreWrite) {
		t.Fatalf("err = %v, want ErrStoreWrite", err)
	}
	if _, err := s.Open(ctx, lexRuntime); !errors.Is(err, ErrNotExist) {
		t.Errorf("after a failed write: Open err = %v, want ErrNotExist", err)
	}
}
