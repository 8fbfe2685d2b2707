package disk

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"moonbit-registry/store"
	"moonbit-registry/store/recordstest"
)

func newRecords(t *testing.T, dir string) *Records {
	t.Helper()
	return NewRecords(dir)
}

func TestRecordsCompliance(t *testing.T) {
	recordstest.Run(t, func(t *testing.T) store.Records {
		return newRecords(t, filepath.Join(t.TempDir(), "records"))
	})
}

// filesUnder lists every file and directory below root, relative.
func filesUnder(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root {
			rel, _ := filepath.Rel(root, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRecordsRefuseBadKeys(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "records")
	r := newRecords(t, dir)
	ctx := context.Background()
	for _, key := range []string{"", "../x", "acme/../../x", "/abs", ".hidden/x", "acme/.x@1.0.0", "a//b", "a/./b", "a/", `a\b`, "a\x00b"} {
		if _, created, err := r.Create(ctx, key, []byte("{}")); err == nil || created {
			t.Errorf("Create(%q) = created %v, %v; want an error", key, created, err)
		}
		if _, swapped, err := r.Swap(ctx, key, []byte("{}"), `"x"`); err == nil || swapped {
			t.Errorf("Swap(%q) = swapped %v, %v; want an error", key, swapped, err)
		}
		if _, _, _, found, err := r.Read(ctx, key); err == nil || found {
			t.Errorf("Read(%q) = found %v, %v; want an error", key, found, err)
		}
	}
	if got := filesUnder(t, parent); len(got) != 0 && !slices.Equal(got, []string{"records"}) {
		t.Errorf("after bad keys the directory holds %q, want nothing (or the empty records directory)", got)
	}
	if _, err := os.Lstat("/abs"); err == nil {
		t.Errorf("/abs exists")
	}
	keys, err := r.List(ctx)
	if err != nil || len(keys) != 0 {
		t.Errorf("List = %q, %v; want none", keys, err)
	}
}

// Records nobody wrote yet read as empty, and reading them writes
// nothing (a read-only registry reads them).
func TestRecordsNeverWritten(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "records")
	r := newRecords(t, dir)
	ctx := context.Background()
	keys, err := r.List(ctx)
	if err != nil || len(keys) != 0 {
		t.Errorf("List = %q, %v; want none, no error", keys, err)
	}
	if _, _, _, found, err := r.Read(ctx, "acme/lib@1.0.0"); err != nil || found {
		t.Errorf("Read = found %v, %v; want not found, no error", found, err)
	}
	if _, swapped, err := r.Swap(ctx, "acme/lib@1.0.0", []byte("{}"), `"x"`); err != nil || swapped {
		t.Errorf("Swap = %v, %v; want not swapped, no error", swapped, err)
	}
	if _, err := os.Lstat(dir); err == nil {
		if got := filesUnder(t, dir); len(got) != 0 && !slices.Equal(got, []string{recordLock}) {
			t.Errorf("reads wrote %q", got)
		}
	}
	// The first write creates the directory.
	if _, created, err := r.Create(ctx, "acme/lib@1.0.0", []byte("{}")); err != nil || !created {
		t.Fatalf("Create = %v, %v", created, err)
	}
	if keys, err := r.List(ctx); err != nil || !slices.Equal(keys, []string{"acme/lib@1.0.0"}) {
		t.Errorf("List = %q, %v", keys, err)
	}
}

func TestRecordsListSkipsTemporaryFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "records")
	r := newRecords(t, dir)
	ctx := context.Background()
	for _, key := range []string{"acme/lib@1.0.0", "acme/a/b@0.1.0-rc.1"} {
		if _, created, err := r.Create(ctx, key, []byte("{}")); err != nil || !created {
			t.Fatalf("Create(%s) = %v, %v", key, created, err)
		}
	}
	// Writes that died half way, in the root and below.
	for _, rel := range []string{recordTempPrefix + "123", "acme/" + recordTempPrefix + "456", "acme/a/" + recordTempPrefix + "789"} {
		if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(rel)), []byte("{half"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"acme/a/b@0.1.0-rc.1", "acme/lib@1.0.0"}; !slices.Equal(keys, want) {
		t.Errorf("List = %q, want %q (no temporary files, no lock file)", keys, want)
	}
}

// Create and Swap leave no temporary file behind, whether they write or
// not.
func TestRecordsLeaveNoTemporaryFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "records")
	r := newRecords(t, dir)
	ctx := context.Background()
	const key = "acme/a/b@0.1.0"
	etag, created, err := r.Create(ctx, key, []byte(`{"v":1}`))
	if err != nil || !created {
		t.Fatalf("Create = %v, %v", created, err)
	}
	if _, created, err := r.Create(ctx, key, []byte(`{"v":2}`)); err != nil || created {
		t.Fatalf("second Create = %v, %v", created, err)
	}
	if _, swapped, err := r.Swap(ctx, key, []byte(`{"v":3}`), `"stale"`); err != nil || swapped {
		t.Fatalf("stale Swap = %v, %v", swapped, err)
	}
	if _, swapped, err := r.Swap(ctx, key, []byte(`{"v":4}`), etag); err != nil || !swapped {
		t.Fatalf("Swap = %v, %v", swapped, err)
	}
	for _, f := range filesUnder(t, dir) {
		if strings.HasPrefix(filepath.Base(f), recordTempPrefix) {
			t.Errorf("temporary file %s left behind", f)
		}
	}
	body, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(key)))
	if err != nil || string(body) != `{"v":4}` {
		t.Errorf("record file = %q, %v", body, err)
	}
}

// Records opened twice over one directory (two processes) see each
// other's writes and exclude each other.
func TestRecordsShareADirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "records")
	a, b := newRecords(t, dir), newRecords(t, dir)
	ctx := context.Background()
	const key = "acme/lib@1.0.0"
	etag, created, err := a.Create(ctx, key, []byte(`{"by":"a"}`))
	if err != nil || !created {
		t.Fatalf("a.Create = %v, %v", created, err)
	}
	if _, created, err := b.Create(ctx, key, []byte(`{"by":"b"}`)); err != nil || created {
		t.Errorf("b.Create of a's key = %v, %v; want not created", created, err)
	}
	body, etagB, _, found, err := b.Read(ctx, key)
	if err != nil || !found || string(body) != `{"by":"a"}` || etagB != etag {
		t.Errorf("b.Read = %q %s %v %v; want a's record and ETag %s", body, etagB, found, err, etag)
	}
}
