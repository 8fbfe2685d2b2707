package disk

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/peterbourgon/diskv/v3"
	"github.com/rs/zerolog"
)

// ResponseCache is an httpcache.Cache kept on disk with diskv/v3. It exists
// because httpcache's own diskcache package is built on diskv v1 (not a
// dependency here) and keeps up to 100 MB of responses in memory.
//
// Each entry is one dumped HTTP response (headers and body) in
// <dir>/<2 hex>/<sha256 of the cache key>. Writes go through diskv's TempDir,
// so they are a temporary file renamed into place: a crash never leaves a
// half-written response that a later Get would parse as a short body.
type ResponseCache struct {
	d        *diskv.Diskv
	readOnly bool
	log      zerolog.Logger
}

// NewResponseCache opens (creating if needed) a response cache in dir, removing
// temporary files an earlier process left behind. Read-only, it writes
// nothing: not at start, and Set and Delete do nothing (offline serving of
// a read-only copy).
func NewResponseCache(dir string, readOnly bool, log zerolog.Logger) (*ResponseCache, error) {
	if dir == "" {
		return nil, errors.New("http cache: empty directory")
	}
	tmp := filepath.Join(dir, tempDirName)
	if !readOnly {
		if err := os.RemoveAll(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("http cache: clearing %s: %w", tmp, err)
		}
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			return nil, fmt.Errorf("http cache: %w", err)
		}
	}
	d := diskv.New(diskv.Options{
		BasePath:     dir,
		Transform:    func(key string) []string { return []string{key[:2]} },
		CacheSizeMax: 0, // responses can be large (symbols.zip); disk only
		PathPerm:     0o755,
		FilePerm:     0o644,
		TempDir:      tmp,
	})
	return &ResponseCache{d: d, readOnly: readOnly, log: log}, nil
}

// fileKey hashes the cache key (a URL) into a fixed-length, path-safe name.
func fileKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Get implements httpcache.Cache.
func (c *ResponseCache) Get(key string) ([]byte, bool) {
	b, err := c.d.Read(fileKey(key))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn().Err(err).Str("key", key).Msg("http cache read failed")
		}
		return nil, false
	}
	return b, true
}

// Set implements httpcache.Cache.
func (c *ResponseCache) Set(key string, resp []byte) {
	if c.readOnly {
		return
	}
	if err := c.d.WriteStream(fileKey(key), bytes.NewReader(resp), true); err != nil {
		c.log.Warn().Err(err).Str("key", key).Msg("http cache write failed")
	}
}

// Delete implements httpcache.Cache.
func (c *ResponseCache) Delete(key string) {
	if c.readOnly {
		return
	}
	if err := c.d.Erase(fileKey(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		c.log.Warn().Err(err).Str("key", key).Msg("http cache delete failed")
	}
}
