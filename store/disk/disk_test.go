package disk

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"moonbit-registry/module"
	"moonbit-registry/store"
	"moonbit-registry/store/storetest"
)

var lexRuntime = module.Version{Module: "moonbitlang/lex/runtime", Version: "0.1.0"}

func newStore(t *testing.T) (*Store, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "packages")
	s, err := New(Options{Root: root, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	return s, root
}

func TestCompliance(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxBytes int64
	}{{"unlimited", 0}, {"size limit", 1 << 40}} {
		t.Run(tc.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) storetest.Harness {
				root := filepath.Join(t.TempDir(), "packages")
				s, err := New(Options{Root: root, MaxBytes: tc.maxBytes, Logger: zerolog.Nop()})
				if err != nil {
					t.Fatal(err)
				}
				<-s.ScanDone()
				return storetest.Harness{Store: s, AddStray: func(t *testing.T) {
					for rel, body := range map[string]string{
						tempDirName + "/put-1.part":    "half an archive",
						"moonbitlang/notes.txt":        "x",
						"walk/m1/sub/0.2%2E0.zip":      "decodes to an archive name",
						"walk/m1/sub/0.1.0.zip.sha256": "not an archive name",
					} {
						p := filepath.Join(root, filepath.FromSlash(rel))
						if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
							t.Fatal(err)
						}
						if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
							t.Fatal(err)
						}
					}
				}}
			})
		})
	}
}

func put(t *testing.T, s store.Store, mv module.Version, b []byte) {
	t.Helper()
	if _, err := store.PutVerified(context.Background(), s, mv, bytes.NewReader(b), store.Meta{SHA256: storetest.Sum(b), Size: -1}); err != nil {
		t.Fatalf("PutVerified(%s): %v", mv, err)
	}
}

// tempFiles lists what is left in the store's temporary directory.
func tempFiles(t *testing.T, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, tempDirName))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// The layout is the documented one, and a failed write leaves no
// temporary file behind.
func TestLayoutAndNoLeftovers(t *testing.T) {
	ctx := context.Background()
	s, root := newStore(t)
	b := storetest.Body(lexRuntime)
	put(t, s, lexRuntime, b)
	p := filepath.Join(root, "moonbitlang", "lex", "runtime", "0.1.0.zip")
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, b) {
		t.Errorf("%s: %d bytes, %v; want the archive", p, len(got), err)
	}
	buf := make([]byte, 128)
	if n, err := unix.Getxattr(p, sumAttr, buf); err != nil || hex.EncodeToString(buf[:n]) != storetest.Sum(b) {
		t.Errorf("%s: attribute %s = %x, %v; want the checksum", p, sumAttr, buf[:n], err)
	}
	// The attribute lives in the inode: the file takes no block for it.
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err == nil && st.Blocks*512 > (int64(len(b))+4095)/4096*4096 {
		t.Logf("%s takes %d bytes on disk for %d bytes (the filesystem keeps the attribute outside the inode)", p, st.Blocks*512, len(b))
	}
	if entries, err := os.ReadDir(filepath.Dir(p)); err != nil || len(entries) != 1 {
		t.Errorf("%s holds %v, %v; want the archive alone", filepath.Dir(p), entries, err)
	}
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader([]byte("partial")), errReader{boom})
	if _, err := store.PutVerified(ctx, s, lexRuntime, r, store.Meta{SHA256: storetest.Sum(nil), Size: -1}); !errors.Is(err, boom) {
		t.Errorf("PutVerified with failing reader: %v, want boom", err)
	}
	if tmp := tempFiles(t, root); len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
	if err := s.Delete(ctx, lexRuntime); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "moonbitlang")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("emptied directories not pruned after Delete: %v", err)
	}
}

// An archive stored before checksums were kept, or with a damaged
// attribute, opens with an unknown checksum rather than a wrong one.
func TestArchiveWithoutChecksum(t *testing.T) {
	for name, damage := range map[string]func(p string) error{
		"none":      func(p string) error { return unix.Removexattr(p, sumAttr) },
		"malformed": func(p string) error { return unix.Setxattr(p, sumAttr, []byte("not a checksum"), 0) },
	} {
		t.Run(name, func(t *testing.T) { testArchiveWithoutChecksum(t, damage) })
	}
}

func testArchiveWithoutChecksum(t *testing.T, damage func(p string) error) {
	s, root := newStore(t)
	b := storetest.Body(lexRuntime)
	put(t, s, lexRuntime, b)
	// Read once before the damage: the checksum the store remembers from
	// that read must not outlive the attribute.
	obj, err := s.Open(context.Background(), lexRuntime)
	if err != nil {
		t.Fatal(err)
	}
	if got := obj.Info().SHA256; got != storetest.Sum(b) {
		t.Fatalf("before the damage: checksum %q, want %q", got, storetest.Sum(b))
	}
	obj.Close()
	// The damage is done to a copy renamed over the archive, as a file
	// replaced on disk would be: the store never rewrites the attribute of
	// a stored archive in place (see sumMemo).
	p := filepath.Join(root, filepath.FromSlash(lexRuntime.RelPath()))
	if err := os.WriteFile(p+".new", b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(p+".new", sumAttr, mustHex(t, storetest.Sum(b)), 0); err != nil {
		t.Fatal(err)
	}
	if err := damage(p + ".new"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p+".new", p); err != nil {
		t.Fatal(err)
	}
	obj, err = s.Open(context.Background(), lexRuntime)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if info := obj.Info(); info.SHA256 != "" || info.Size != int64(len(b)) {
		t.Errorf("Info = %+v, want size %d and no checksum", info, len(b))
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestRemovesLeftoverTempFiles(t *testing.T) {
	ctx := context.Background()
	s, root := newStore(t)
	put(t, s, lexRuntime, storetest.Body(lexRuntime))
	// A process that died mid-write leaves these behind.
	for _, name := range []string{"put-123.part", "put-456.part"} {
		if err := os.WriteFile(filepath.Join(root, tempDirName, name), []byte("half an archive"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s2, err := New(Options{Root: root, Logger: zerolog.Nop()})
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

// A store opening on a root sweeps only what nobody writes: the temporary
// files of writers in other processes (another PID namespace shows them
// with PIDs that mean nothing here) are locked and stay.
func TestStartupKeepsLiveWritersTempFiles(t *testing.T) {
	ctx := context.Background()
	s, root := newStore(t)
	// A writer of this store, mid-archive.
	b := storetest.Body(lexRuntime)
	w, err := s.Create(ctx, lexRuntime, store.Meta{SHA256: storetest.Sum(b), Size: int64(len(b))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b[:1000]); err != nil {
		t.Fatal(err)
	}
	// Another process holding its temporary file locked, as a writer does.
	other := filepath.Join(root, tempDirName, "put-77.part")
	holder := exec.Command("flock", other, "sleep", "30")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	waitLocked(t, other)
	// Left by writers that died: named like live ones, but unlocked.
	dead := []string{fmt.Sprintf("put-%d-1.part", os.Getpid()), "put-1-2.part"}
	for _, name := range dead {
		if err := os.WriteFile(filepath.Join(root, tempDirName, name), []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	if _, err := New(Options{Root: root, Logger: zerolog.Nop()}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another process's locked temporary file was removed: %v", err)
	}
	for _, name := range dead {
		if _, err := os.Stat(filepath.Join(root, tempDirName, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("an abandoned temporary file survived: %s: %v", name, err)
		}
	}
	// The writer of the first store goes on undisturbed.
	if _, err := w.Write(b[1000:]); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatalf("Commit after another store's sweep: %v", err)
	}
	obj, err := s.Open(ctx, lexRuntime)
	if err != nil {
		t.Fatal(err)
	}
	obj.Close()
}

// waitLocked polls until some process holds p locked (bounded).
func waitLocked(t *testing.T, p string) {
	t.Helper()
	for range 200 {
		if f, err := os.Open(p); err == nil {
			err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never got locked", p)
}

func TestPing(t *testing.T) {
	ctx := context.Background()
	s, root := newStore(t)
	if err := s.Ping(ctx); err != nil {
		t.Errorf("a fresh store: %v", err)
	}
	if os.Geteuid() != 0 { // root may write anywhere
		os.Chmod(root, 0o500)
		defer os.Chmod(root, 0o700)
		if err := s.Ping(ctx); err == nil {
			t.Error("a read-only root: want an error")
		}
	}
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err == nil {
		t.Error("a removed root: want an error")
	}
}

func TestWriteFailureIsErrWrite(t *testing.T) {
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
	b := storetest.Body(lexRuntime)
	_, err := store.PutVerified(ctx, s, lexRuntime, bytes.NewReader(b), store.Meta{SHA256: storetest.Sum(b), Size: -1})
	if !errors.Is(err, store.ErrWrite) {
		t.Fatalf("err = %v, want store.ErrWrite", err)
	}
	if _, err := s.Open(ctx, lexRuntime); !errors.Is(err, store.ErrNotExist) {
		t.Errorf("after a failed write: Open err = %v, want ErrNotExist", err)
	}
}

// A store opened read-only serves what is there and writes nothing.
func TestReadOnly(t *testing.T) {
	ctx := context.Background()
	s, root := newStore(t)
	b := storetest.Body(lexRuntime)
	put(t, s, lexRuntime, b)
	if err := os.RemoveAll(filepath.Join(root, tempDirName)); err != nil {
		t.Fatal(err)
	}
	ro, err := New(Options{Root: root, ReadOnly: true, MaxBytes: 1, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, tempDirName)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("opening read-only created the temporary directory: %v", err)
	}
	obj, err := ro.Open(ctx, lexRuntime)
	if err != nil {
		t.Fatal(err)
	}
	if info := obj.Info(); info.SHA256 != storetest.Sum(b) {
		t.Errorf("Info = %+v, want the stored checksum", info)
	}
	obj.Close()
	if _, err := ro.Create(ctx, lexRuntime, store.Meta{SHA256: storetest.Sum(b), Size: -1}); !errors.Is(err, store.ErrWrite) {
		t.Errorf("Create on a read-only store = %v, want ErrWrite", err)
	}
	if err := ro.Delete(ctx, lexRuntime); !errors.Is(err, store.ErrWrite) {
		t.Errorf("Delete on a read-only store = %v, want ErrWrite", err)
	}
	if err := ro.Ping(ctx); err != nil {
		t.Errorf("Ping of a read-only store = %v, want nil: serving is all it is asked", err)
	}
	if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(lexRuntime.RelPath()))); err != nil {
		t.Errorf("the archive is gone: %v", err)
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
