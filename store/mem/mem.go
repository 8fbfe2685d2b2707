// Package mem keeps archives and records in memory: a store.Store and a
// store.Records that pass the compliance suites, for tests that exercise
// the registry in-process. Nothing survives the process.
package mem

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"moonbit-registry/module"
	"moonbit-registry/store"
)

// Store is an in-memory store.Store. The zero value is not usable; call New.
type Store struct {
	mu       sync.Mutex
	archives map[module.Version]archive
}

type archive struct {
	data []byte
	info store.Info
}

// New returns an empty Store.
func New() *Store { return &Store{archives: map[module.Version]archive{}} }

// Open implements store.Store; the Object can seek.
func (s *Store) Open(ctx context.Context, mv module.Version) (store.Object, error) {
	if err := check(ctx, mv); err != nil {
		return nil, err
	}
	s.mu.Lock()
	a, ok := s.archives[mv]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%s: %w", mv, store.ErrNotExist)
	}
	return &object{Reader: bytes.NewReader(a.data), info: a.info}, nil
}

type object struct {
	*bytes.Reader
	info store.Info
}

func (o *object) Info() store.Info { return o.info }
func (o *object) Close() error     { return nil }

// Create implements store.Store.
func (s *Store) Create(ctx context.Context, mv module.Version, meta store.Meta) (store.Writer, error) {
	if err := check(ctx, mv); err != nil {
		return nil, err
	}
	return &writer{s: s, mv: mv, meta: meta}, nil
}

type writer struct {
	s    *Store
	mv   module.Version
	meta store.Meta
	buf  bytes.Buffer
	done bool
}

func (w *writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("%s: %w: written after Commit or Abort", w.mv, store.ErrWrite)
	}
	return w.buf.Write(p)
}

// Commit makes the archive visible whole, with the checksum it was
// created with.
func (w *writer) Commit(ctx context.Context) error {
	if w.done {
		return fmt.Errorf("%s: committed after Commit or Abort", w.mv)
	}
	w.done = true
	if err := ctx.Err(); err != nil {
		return err
	}
	if w.meta.Size >= 0 && int64(w.buf.Len()) != w.meta.Size {
		return fmt.Errorf("%s: %w: %d bytes written, %d announced", w.mv, store.ErrWrite, w.buf.Len(), w.meta.Size)
	}
	data := bytes.Clone(w.buf.Bytes())
	w.s.mu.Lock()
	w.s.archives[w.mv] = archive{data: data, info: store.Info{Size: int64(len(data)), ModTime: time.Now(), SHA256: w.meta.SHA256}}
	w.s.mu.Unlock()
	return nil
}

func (w *writer) Abort() error {
	w.done = true
	w.buf = bytes.Buffer{}
	return nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, mv module.Version) error {
	if err := check(ctx, mv); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.archives[mv]; !ok {
		return fmt.Errorf("%s: %w", mv, store.ErrNotExist)
	}
	delete(s.archives, mv)
	return nil
}

// Walk implements store.Store, over the archives held when it starts.
func (s *Store) Walk(ctx context.Context, fn func(module.Version) error) error {
	s.mu.Lock()
	mvs := slices.Collect(maps.Keys(s.archives))
	s.mu.Unlock()
	for _, mv := range mvs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(mv); err != nil {
			return err
		}
	}
	return nil
}

// Ping implements store.Store: memory always takes writes.
func (s *Store) Ping(ctx context.Context) error { return ctx.Err() }

func check(ctx context.Context, mv module.Version) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return mv.Validate()
}

// Records is an in-memory store.Records. The zero value is not usable;
// call NewRecords.
type Records struct {
	mu      sync.Mutex
	records map[string]record
}

type record struct {
	body    []byte
	etag    string
	written time.Time
}

// NewRecords returns empty Records.
func NewRecords() *Records { return &Records{records: map[string]record{}} }

func newRecord(body []byte) record {
	sum := sha256.Sum256(body)
	// The time makes a rewrite of the same body a new ETag, as on disk.
	return record{body: bytes.Clone(body), etag: fmt.Sprintf("%s-%d", hex.EncodeToString(sum[:8]), time.Now().UnixNano()), written: time.Now()}
}

// Create implements store.Records.
func (r *Records) Create(ctx context.Context, key string, body []byte) (string, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.records[key]; ok {
		return "", false, nil
	}
	rec := newRecord(body)
	r.records[key] = rec
	return rec.etag, true, nil
}

// Swap implements store.Records.
func (r *Records) Swap(ctx context.Context, key string, body []byte, etag string) (string, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old, ok := r.records[key]
	if !ok || old.etag != etag {
		return "", false, nil
	}
	rec := newRecord(body)
	r.records[key] = rec
	return rec.etag, true, nil
}

// Read implements store.Records.
func (r *Records) Read(ctx context.Context, key string) ([]byte, string, time.Duration, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", 0, false, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.records[key]
	if !ok {
		return nil, "", 0, false, nil
	}
	return bytes.Clone(rec.body), rec.etag, time.Since(rec.written), true, nil
}

// List implements store.Records.
func (r *Records) List(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(maps.Keys(r.records)), nil
}
