package spool

import (
	"io"
	"os"
	"testing"
)

// TestReopen: the reopened descriptor reads an unlinked file, including
// what is written after it was opened, at an offset of its own.
func TestReopen(t *testing.T) {
	f, err := CreateTemp(t.TempDir(), "reopen-*")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	os.Remove(f.Name())
	f.WriteAt([]byte("hello"), 0)
	g := Reopen(f)
	if g == nil {
		t.Fatal("Reopen gave nothing on Linux")
	}
	defer g.Close()
	f.WriteAt([]byte(", world"), 5)
	if _, err := g.Seek(2, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(g)
	if err != nil || string(b) != "llo, world" {
		t.Fatalf("read %q, %v", b, err)
	}
	if _, err := g.Write([]byte("x")); err == nil {
		t.Error("the reopened descriptor can write")
	}
}
