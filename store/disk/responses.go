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
	d         *diskv.Diskv
	dir       string
	usedSpace // what is kept, for a size limit shared with the archives; read-only flag and log
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
	c := &ResponseCache{d: d, dir: dir, usedSpace: usedSpace{readOnly: readOnly, log: log}}
	// The kept bodies live in a directory of their own below dir.
	if err := c.scanAnswers(); err != nil {
		return nil, fmt.Errorf("http cache: %w", err)
	}
	return c, nil
}

// fileKey hashes the cache key (a URL) into a fixed-length, path-safe name.
func fileKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// hashedPath is where a file for key lives below dir: <2 hex>/<fileKey>,
// diskv's layout for the response cache and the kept bodies' too.
func hashedPath(dir, key string) string {
	k := fileKey(key)
	return filepath.Join(dir, k[:2], k)
}

// scanAnswers learns the stored answers, <dir>/<2 hex>/<64 hex> (the kept
// bodies below dir/bodies are Bodies' own).
func (c *ResponseCache) scanAnswers() error {
	entries, err := os.ReadDir(c.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // nothing kept yet (a read-only cache creates nothing)
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() && len(e.Name()) == 2 {
			if err := c.scan(filepath.Join(c.dir, e.Name()), ""); err != nil {
				return err
			}
		}
	}
	return nil
}

// answerPath is where diskv keeps the answer for key.
func (c *ResponseCache) answerPath(key string) string { return hashedPath(c.dir, key) }

// Get implements httpcache.Cache.
func (c *ResponseCache) Get(key string) ([]byte, bool) {
	c.used(c.answerPath(key))
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
		return
	}
	p := c.answerPath(key)
	if fi, err := os.Stat(p); err == nil {
		c.add(p, diskUsage(fi))
	}
}

// Delete implements httpcache.Cache.
func (c *ResponseCache) Delete(key string) {
	if c.readOnly {
		return
	}
	c.forget(c.answerPath(key))
	if err := c.d.Erase(fileKey(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		c.log.Warn().Err(err).Str("key", key).Msg("http cache delete failed")
	}
}
