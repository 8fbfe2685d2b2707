package disk

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Records are small documents under keys in a directory, written only with
// conditions, as the S3 store's Objects are: Create only if absent, Swap
// only if unchanged since read. The ETag is the body's SHA-256. Every
// write goes to a temporary file that is synced and then linked (Create)
// or renamed (Swap) into place, so a reader sees a whole document or none,
// and a crash loses at most a write that was never reported done. Writers
// in several processes are serialised by a lock file.
type Records struct {
	dir string
}

// NewRecords keeps records under dir, which the first write creates (so
// a read-only registry can still read them).
func NewRecords(dir string) *Records {
	return &Records{dir: filepath.Clean(dir)}
}

// recordTempPrefix starts the names of files being written; List skips them.
const recordTempPrefix = ".tmp-"

// recordLock is the lock file writers hold.
const recordLock = ".lock"

func (r *Records) path(key string) (string, error) {
	if key == "" || strings.HasPrefix(key, "/") || strings.ContainsRune(key, 0) || strings.ContainsRune(key, '\\') {
		return "", fmt.Errorf("records: bad key %q", key)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.HasPrefix(seg, ".") {
			return "", fmt.Errorf("records: bad key %q", key)
		}
	}
	return filepath.Join(r.dir, filepath.FromSlash(key)), nil
}

func etagOf(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

// write runs a write of key's file at p with the writers' lock held.
func (r *Records) write(ctx context.Context, key string, fn func(p string) (string, bool, error)) (string, bool, error) {
	p, err := r.path(key)
	if err != nil {
		return "", false, err
	}
	unlock, err := r.lock(ctx)
	if err != nil {
		return "", false, err
	}
	defer unlock()
	return fn(p)
}

// Create writes key only if it does not exist.
func (r *Records) Create(ctx context.Context, key string, body []byte) (string, bool, error) {
	return r.write(ctx, key, func(p string) (string, bool, error) { return r.create(key, p, body) })
}

func (r *Records) create(key, p string, body []byte) (string, bool, error) {
	tmp, err := r.writeTemp(filepath.Dir(p), body)
	if err != nil {
		return "", false, err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, p); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return "", false, nil
		}
		return "", false, fmt.Errorf("records: create %s: %w", key, err)
	}
	return etagOf(body), true, syncUpTo(filepath.Dir(p), r.dir)
}

// Swap replaces key only if its ETag is still etag.
func (r *Records) Swap(ctx context.Context, key string, body []byte, etag string) (string, bool, error) {
	return r.write(ctx, key, func(p string) (string, bool, error) { return r.swap(key, p, body, etag) })
}

func (r *Records) swap(key, p string, body []byte, etag string) (string, bool, error) {
	cur, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("records: %w", err)
	}
	if etagOf(cur) != etag {
		return "", false, nil
	}
	tmp, err := r.writeTemp(filepath.Dir(p), body)
	if err != nil {
		return "", false, err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return "", false, fmt.Errorf("records: swap %s: %w", key, err)
	}
	return etagOf(body), true, syncDir(filepath.Dir(p))
}

// Read returns key's body, ETag and age.
func (r *Records) Read(ctx context.Context, key string) ([]byte, string, time.Duration, bool, error) {
	p, err := r.path(key)
	if err != nil {
		return nil, "", 0, false, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", 0, false, nil
	}
	if err != nil {
		return nil, "", 0, false, fmt.Errorf("records: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, "", 0, false, fmt.Errorf("records: %w", err)
	}
	if fi.Size() > maxRecord {
		return nil, "", 0, false, fmt.Errorf("records: %s is larger than %d bytes", key, maxRecord)
	}
	body := make([]byte, fi.Size())
	if _, err := f.ReadAt(body, 0); err != nil && fi.Size() > 0 {
		return nil, "", 0, false, fmt.Errorf("records: %w", err)
	}
	return body, etagOf(body), time.Since(fi.ModTime()), true, nil
}

// maxRecord bounds what Read accepts: records are a few KiB.
const maxRecord = 1 << 20

// List returns every key, in lexical order.
func (r *Records) List(ctx context.Context) ([]string, error) {
	var keys []string
	err := filepath.WalkDir(r.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && p != r.dir {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() {
			rel, err := filepath.Rel(r.dir, p)
			if err != nil {
				return err
			}
			keys = append(keys, filepath.ToSlash(rel))
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // nothing written yet
	}
	if err != nil {
		return nil, fmt.Errorf("records: list: %w", err)
	}
	return keys, nil
}

// writeTemp writes body to a synced temporary file in dir (created).
func (r *Records) writeTemp(dir string, body []byte) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("records: %w", err)
	}
	f, err := os.CreateTemp(dir, recordTempPrefix+"*")
	if err != nil {
		return "", fmt.Errorf("records: %w", err)
	}
	_, err = f.Write(body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("records: %w", err)
	}
	return f.Name(), nil
}

// lock takes the writers' lock, polling until it is free or ctx ends.
func (r *Records) lock(ctx context.Context) (func(), error) {
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return nil, fmt.Errorf("records: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(r.dir, recordLock), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("records: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("records: lock: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
