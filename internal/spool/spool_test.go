package spool

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

func TestSpool(t *testing.T) {
	for _, size := range []int{0, 10, Memory, Memory + 1, 5*Memory + 7} {
		var s Spool
		want := bytes.Repeat([]byte("0123456789"), size/10+1)[:size]
		for chunk := want; len(chunk) > 0; {
			n := min(len(chunk), 4096)
			if _, err := s.Write(chunk[:n]); err != nil {
				t.Fatal(err)
			}
			chunk = chunk[n:]
		}
		if s.Len() != int64(size) || (s.file != nil) != (size > Memory) {
			t.Errorf("%d bytes: Len %d, spilled to a file: %v", size, s.Len(), s.file != nil)
		}
		r, err := s.Reader()
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%d bytes: read back %d, %v", size, len(got), err)
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}
	s := Spool{Limit: 10}
	if _, err := s.Write(make([]byte, 11)); !errors.Is(err, ErrFull) {
		t.Errorf("over the limit: %v, want ErrFull", err)
	}
}

func TestCreateTemp(t *testing.T) {
	dir := t.TempDir()
	seen := map[string]bool{}
	for range 20 {
		f, err := CreateTemp(dir, "put-*.part")
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f.Name())
		if seen[name] || !strings.HasPrefix(name, "put-") || !strings.HasSuffix(name, ".part") || len(name) <= len("put-.part") {
			t.Errorf("name %q: want put-<random>.part, each new", name)
		}
		seen[name] = true
		fi, err := f.Stat()
		if err != nil || fi.Mode().Perm() != 0o600 || !fi.Mode().IsRegular() {
			t.Errorf("%s: %v, %v; want a regular file, mode 0600", name, fi.Mode(), err)
		}
		if _, err := f.WriteString("x"); err != nil {
			t.Errorf("write: %v", err)
		}
		f.Close()
	}
	if _, err := CreateTemp(filepath.Join(dir, "missing"), "x-*"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("in a missing directory: %v, want ErrNotExist", err)
	}
}
