package testsupport

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// WalkIndex calls fn for every line of every <module>.index file below
// root/user (an index work tree, such as the real snapshot in
// testdata/mooncakes-index), with the module name the file stands
// for, in the order WalkDir visits the files.
func WalkIndex(root string, fn func(module string, line []byte) error) error {
	user := filepath.Join(root, "user")
	return filepath.WalkDir(user, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".index") {
			return err
		}
		rel, err := filepath.Rel(user, p)
		if err != nil {
			return err
		}
		module := strings.TrimSuffix(filepath.ToSlash(rel), ".index")
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			if err := fn(module, sc.Bytes()); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
		return sc.Err()
	})
}

// ArchiveFiles lists the archives below a disk store's root (its
// temporary directory left out) by file name without ".zip", sorted, and
// what they take on disk in bytes (allocated blocks).
func ArchiveFiles(t testing.TB, root string) (names []string, total int64) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".tmp" {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() && strings.HasSuffix(p, ".zip") {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			total += DiskUsage(fi)
			names = append(names, strings.TrimSuffix(d.Name(), ".zip"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names, total
}

// DiskUsage is what a file takes on disk: its allocated blocks.
func DiskUsage(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Blocks > 0 {
		return st.Blocks * 512
	}
	return fi.Size()
}

// StoredSize is what a file of these bytes takes on disk in os.TempDir()
// (where tests keep their stores), measured by writing one; the length if
// that cannot be done.
func StoredSize(b []byte) int64 {
	f, err := os.CreateTemp("", "stored-size-*")
	if err != nil {
		return int64(len(b))
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Write(b); err != nil || f.Sync() != nil {
		return int64(len(b))
	}
	fi, err := f.Stat()
	if err != nil {
		return int64(len(b))
	}
	return DiskUsage(fi)
}
