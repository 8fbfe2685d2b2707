package disk

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
)

func TestResponseCacheRemovesLeftoverTempFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "http-cache")
	if err := os.MkdirAll(filepath.Join(dir, tempDirName), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, tempDirName, "123456"), []byte("HTTP/1.1 200 OK\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := NewResponseCache(dir, false, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, tempDirName)); len(entries) != 0 {
		t.Errorf("leftover temporary files: %v", entries)
	}
	c.Set("k", []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	if b, ok := c.Get("k"); !ok || len(b) == 0 {
		t.Error("Get after Set failed")
	}
	c.Delete("k")
	if _, ok := c.Get("k"); ok {
		t.Error("Get after Delete succeeded")
	}
}
