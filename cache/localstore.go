package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"moonbit-registry/module"

	"github.com/peterbourgon/diskv/v3"
	"github.com/rs/zerolog"
)

// tempDirName is where Put writes archives before they are verified. It
// starts with '.', which no owner name may (see module.ValidateModule), so no
// request can ever map onto a temporary file.
const tempDirName = ".tmp"

// LocalStore keeps archives on the local filesystem at
// <root>/<owner>/<rest>/<version>.zip, a layout a person can browse and a
// static file server could serve.
//
// diskv provides the key <-> path mapping (AdvancedTransform and
// InverseTransform), the final publish step (Import with move, which is a
// rename under diskv's lock, into directories it creates) and Erase (which
// prunes emptied directories). The write itself is done here and not with
// diskv.WriteStream because WriteStream holds diskv's store-wide lock for
// the whole copy (one slow upstream download would block every other
// write) and renames before the content could be verified. Reads open the
// file directly so callers get an *os.File (sendfile) rather than diskv's
// wrapped reader.
type LocalStore struct {
	root string
	tmp  string
	d    *diskv.Diskv
	log  zerolog.Logger
}

// NewLocalStore opens (creating if needed) a store rooted at root. Temporary
// files left by an earlier process that died mid-write are removed: they
// were never published, so nothing refers to them.
//
// Temporary files carry the writer's process ID, so a process that starts
// while another (a second mirror run, a server) writes to the same root
// leaves the other's in-progress files alone.
func NewLocalStore(root string, log zerolog.Logger) (*LocalStore, error) {
	if root == "" {
		return nil, errors.New("local store: empty root")
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("local store: %w", err)
	}
	tmp := filepath.Join(root, tempDirName)
	if err := sweepTemp(tmp, log); err != nil {
		return nil, fmt.Errorf("local store: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("local store: %w", err)
	}
	d := diskv.New(diskv.Options{
		BasePath:          root,
		AdvancedTransform: keyToPathKey,
		InverseTransform:  pathKeyToKey,
		CacheSizeMax:      0, // never hold archives in memory
		PathPerm:          0o755,
		FilePerm:          0o644,
		// Only used if Import ever has to copy instead of rename; with it
		// even that path writes a temporary file and renames.
		TempDir: tmp,
	})
	return &LocalStore{root: root, tmp: tmp, d: d, log: log}, nil
}

// keyToPathKey maps "owner/rest/version.zip" to directories owner/rest and
// file version.zip. Keys are always validated module.Version.RelPath values.
func keyToPathKey(key string) *diskv.PathKey {
	segs := strings.Split(key, "/")
	return &diskv.PathKey{Path: segs[:len(segs)-1], FileName: segs[len(segs)-1]}
}

func pathKeyToKey(pk *diskv.PathKey) string {
	parts := make([]string, 0, len(pk.Path)+1)
	for _, p := range pk.Path {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(append(parts, pk.FileName), "/")
}

// path is where diskv puts key: the same join diskv does internally.
func (s *LocalStore) path(key string) string {
	pk := keyToPathKey(key)
	return filepath.Join(append(append([]string{s.root}, pk.Path...), pk.FileName)...)
}

// Open implements Store; the Object is an *os.File.
func (s *LocalStore) Open(ctx context.Context, mv module.Version) (Object, error) {
	if err := mv.Validate(); err != nil {
		return nil, err
	}
	f, err := os.Open(s.path(mv.RelPath()))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotExist, mv)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", mv, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open %s: %w", mv, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrNotExist, mv)
	}
	return f, nil
}

// Put implements Store: temporary file in <root>/.tmp (same filesystem, so
// the final rename is atomic), streamed while hashing, fsynced, verified,
// renamed into place, then the directories fsynced so the rename survives a
// crash.
func (s *LocalStore) Put(ctx context.Context, mv module.Version, r io.Reader, expectedSHA256 string) (n int64, err error) {
	if err := mv.Validate(); err != nil {
		return 0, err
	}
	if !module.ValidChecksum(expectedSHA256) {
		return 0, fmt.Errorf("put %s: expected checksum %q is not a lowercase hex SHA-256", mv, expectedSHA256)
	}
	f, err := os.CreateTemp(s.tmp, fmt.Sprintf("put-%d-*.part", os.Getpid()))
	if err != nil {
		return 0, fmt.Errorf("put %s: %w: %w", mv, ErrStoreWrite, err)
	}
	published := false
	defer func() {
		if !published {
			f.Close()
			if rmErr := os.Remove(f.Name()); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) {
				s.log.Warn().Err(rmErr).Str("file", f.Name()).Msg("removing temporary file")
			}
		}
	}()

	h := sha256.New()
	n, err = io.Copy(io.MultiWriter(storeWriter{f}, h), ctxReader{ctx: ctx, r: r})
	if err != nil {
		return n, fmt.Errorf("put %s: after %d bytes: %w", mv, n, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != expectedSHA256 {
		return n, &ChecksumError{Archive: mv, Expected: expectedSHA256, Actual: got}
	}
	if err := f.Chmod(0o644); err != nil {
		return n, fmt.Errorf("put %s: %w: %w", mv, ErrStoreWrite, err)
	}
	if err := f.Sync(); err != nil {
		return n, fmt.Errorf("put %s: fsync: %w: %w", mv, ErrStoreWrite, err)
	}
	if err := f.Close(); err != nil {
		return n, fmt.Errorf("put %s: %w: %w", mv, ErrStoreWrite, err)
	}
	key := mv.RelPath()
	if err := s.d.Import(f.Name(), key, true); err != nil {
		return n, fmt.Errorf("put %s: publish: %w: %w", mv, ErrStoreWrite, err)
	}
	published = true
	if err := s.syncDirs(filepath.Dir(s.path(key))); err != nil {
		return n, fmt.Errorf("put %s: %w: %w", mv, ErrStoreWrite, err)
	}
	return n, nil
}

// syncDirs fsyncs dir and its ancestors up to the root: Import may have
// created any of them, and a new entry is only durable once its parent
// directory is synced.
func (s *LocalStore) syncDirs(dir string) error {
	for {
		if err := syncDir(dir); err != nil {
			return err
		}
		if dir == s.root || !strings.HasPrefix(dir, s.root) {
			return nil
		}
		dir = filepath.Dir(dir)
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}

// Delete implements Store.
func (s *LocalStore) Delete(ctx context.Context, mv module.Version) error {
	if err := mv.Validate(); err != nil {
		return err
	}
	err := s.d.Erase(mv.RelPath())
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotExist, mv)
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", mv, err)
	}
	return nil
}

// Walk implements Store. It walks the tree itself rather than with
// diskv.Keys, which drops filesystem errors silently: a verify command must
// know when part of the store could not be read.
func (s *LocalStore) Walk(ctx context.Context, fn func(module.Version) error) error {
	return filepath.WalkDir(s.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("walk: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			if p == s.tmp {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return nil
		}
		key := filepath.ToSlash(rel)
		mv, err := module.ParseArchivePath(key)
		// The key must be exactly the archive's own path: a file whose name
		// only decodes to a valid one (say "a%41") is a stray, not an archive.
		if err != nil || mv.RelPath() != key {
			return nil
		}
		return fn(mv)
	})
}

// ctxReader stops a copy once ctx ends, even if the underlying reader does
// not watch ctx itself.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// sweepTemp removes temporary files of writers that are gone: files named
// put-<pid>-*.part whose process no longer runs, and anything else.
func sweepTemp(dir string, log zerolog.Logger) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", dir, err)
	}
	removed := 0
	for _, e := range entries {
		if pid, ok := tempOwner(e.Name()); ok && pid != os.Getpid() && processAlive(pid) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("removing leftover %s: %w", e.Name(), err)
		}
		removed++
	}
	if removed > 0 {
		log.Info().Int("files", removed).Str("dir", dir).Msg("removed leftover temporary files")
	}
	return nil
}

// tempOwner reads the process ID out of a temporary file's name.
func tempOwner(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "put-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
	return pid, err == nil && pid > 0
}

// processAlive reports whether a process with this ID exists (signal 0
// checks without sending anything).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// DirWritable reports, cheaply (one access(2) call, nothing written),
// whether this process may create files in dir: what readiness checks ask
// of the store.
func DirWritable(dir string) error {
	if err := syscall.Access(dir, 2 /* W_OK */); err != nil {
		return fmt.Errorf("archive store %s is not writable: %w", dir, err)
	}
	return nil
}

// storeWriter marks errors of writing the temporary file as the store's,
// so they are told apart from errors of the reader (upstream) in io.Copy.
type storeWriter struct{ f *os.File }

func (w storeWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrStoreWrite, err)
	}
	return n, err
}
