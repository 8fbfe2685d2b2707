package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/peterbourgon/diskv/v3"
	"github.com/rs/zerolog"
)

// HTTPCache is an httpcache.Cache kept on disk with diskv/v3. It exists
// because httpcache's own diskcache package is built on diskv v1 (not a
// dependency here) and keeps up to 100 MB of responses in memory.
//
// Each entry is one dumped HTTP response (headers and body) in
// <dir>/<2 hex>/<sha256 of the cache key>. Writes go through diskv's TempDir,
// so they are a temporary file renamed into place: a crash never leaves a
// half-written response that a later Get would parse as a short body.
type HTTPCache struct {
	d   *diskv.Diskv
	log zerolog.Logger
}

// NewHTTPCache opens (creating if needed) a response cache in dir, removing
// temporary files an earlier process left behind.
func NewHTTPCache(dir string, log zerolog.Logger) (*HTTPCache, error) {
	if dir == "" {
		return nil, errors.New("http cache: empty directory")
	}
	tmp := filepath.Join(dir, tempDirName)
	if err := os.RemoveAll(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("http cache: clearing %s: %w", tmp, err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("http cache: %w", err)
	}
	d := diskv.New(diskv.Options{
		BasePath:     dir,
		Transform:    func(key string) []string { return []string{key[:2]} },
		CacheSizeMax: 0, // responses can be large (symbols.zip); disk only
		PathPerm:     0o755,
		FilePerm:     0o644,
		TempDir:      tmp,
	})
	return &HTTPCache{d: d, log: log}, nil
}

// fileKey hashes the cache key (a URL) into a fixed-length, path-safe name.
func fileKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Get implements httpcache.Cache.
func (c *HTTPCache) Get(key string) ([]byte, bool) {
	b, err := c.d.Read(fileKey(key))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn().Err(err).Str("key", key).Msg("http cache read failed")
		}
		return nil, false
	}
	return b, true
}

// Set implements httpcache.Cache. httpcache would store any status that is
// not marked no-store, 5xx included, and a stored 5xx would later be served
// as if it were content. Only successful and permanent-redirect statuses
// among those cacheable by default (RFC 9110 section 15.1) are kept: storing
// 404s too would let any client grow the cache without bound by asking for
// paths that do not exist.
func (c *HTTPCache) Set(key string, resp []byte) {
	if !cacheableStatus(resp) {
		return
	}
	if err := c.d.WriteStream(fileKey(key), bytes.NewReader(resp), true); err != nil {
		c.log.Warn().Err(err).Str("key", key).Msg("http cache write failed")
	}
}

// Delete implements httpcache.Cache.
func (c *HTTPCache) Delete(key string) {
	if err := c.d.Erase(fileKey(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		c.log.Warn().Err(err).Str("key", key).Msg("http cache delete failed")
	}
}

// cacheableStatus reads the status code from a dumped response's first line
// ("HTTP/1.1 200 OK").
func cacheableStatus(resp []byte) bool {
	line, _, _ := bytes.Cut(resp, []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) < 2 {
		return false
	}
	code, err := strconv.Atoi(fields[1])
	if err != nil {
		return false
	}
	switch code {
	case 200, 203, 204, 300, 301, 308:
		return true
	}
	return false
}
