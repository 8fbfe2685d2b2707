// Package disk is the local-disk archive store: archives as plain files at
// <root>/<owner>/<rest>/<version>.zip (a layout a person can browse and a
// static file server can serve), each with the checksum it was committed
// with beside it, and an optional size limit with least-recently-used
// eviction (evict.go).
package disk

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/peterbourgon/diskv/v3"
	"github.com/rs/zerolog"

	"moonbit-registry/module"
	"moonbit-registry/store"
)

// tempDirName is where archives are written before they are committed. It
// starts with '.', which no owner name may (see module.ValidateModule), so
// no request can ever map onto a temporary file.
const tempDirName = ".tmp"

// sumSuffix names the checksum record beside an archive:
// <version>.zip.sha256 holds the hex SHA-256 it was committed with. No
// archive path ends in it, so Walk and requests never take it for one.
const sumSuffix = ".sha256"

// Options configures a Store.
type Options struct {
	// Root is the store's directory; created if missing.
	Root string
	// MaxBytes limits the store's size (cache.max_size): least-recently-used
	// archives not in use are evicted when it is exceeded. 0: no limit,
	// and nothing is ever evicted (what read-only commands use).
	MaxBytes int64
	// TouchInterval bounds how often one archive's recorded last use is
	// rewritten on disk; 0 means a minute.
	TouchInterval time.Duration
	Logger        zerolog.Logger
}

// Store implements store.Store on the local filesystem.
//
// diskv provides the key <-> path mapping (AdvancedTransform and
// InverseTransform), the final publish step (Import with move, which is a
// rename under diskv's lock, into directories it creates) and Erase (which
// prunes emptied directories). Writes are not diskv.WriteStream, which holds
// diskv's store-wide lock for the whole copy (one slow upstream download
// would block every other write) and renames before the caller could
// verify. Reads open the file directly so callers get the *os.File (and
// with it sendfile) rather than diskv's wrapped reader.
type Store struct {
	root  string
	tmp   string
	d     *diskv.Diskv
	log   zerolog.Logger
	sums  sumCache
	evict *evictor // nil without a size limit
}

// New opens (creating if needed) a store rooted at opts.Root. Temporary
// files left by an earlier process that died mid-write are removed: they
// were never committed, so nothing refers to them. Temporary files carry
// the writer's process ID, so a process that starts while another (a second
// mirror run, a server) writes to the same root leaves the other's
// in-progress files alone. With a size limit, the store is walked in the
// background to learn its size (see evict.go).
func New(opts Options) (*Store, error) {
	if opts.Root == "" {
		return nil, errors.New("disk store: empty root")
	}
	if opts.MaxBytes < 0 {
		return nil, fmt.Errorf("disk store: size limit %d is negative", opts.MaxBytes)
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("disk store: %w", err)
	}
	tmp := filepath.Join(root, tempDirName)
	if err := sweepTemp(tmp, opts.Logger); err != nil {
		return nil, fmt.Errorf("disk store: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("disk store: %w", err)
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
	s := &Store{root: root, tmp: tmp, d: d, log: opts.Logger}
	if opts.MaxBytes > 0 {
		s.evict = newEvictor(s, opts.MaxBytes, opts.TouchInterval, opts.Logger)
		go s.evict.scan() // ends on its own once the store is walked
	}
	return s, nil
}

// Root is the store's directory.
func (s *Store) Root() string { return s.root }

// keyToPathKey maps "owner/rest/version.zip" to directories owner/rest and
// file version.zip. Keys are always validated module.Version.RelPath values
// (plus sumSuffix for checksum records).
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
func (s *Store) path(key string) string {
	pk := keyToPathKey(key)
	return filepath.Join(append(append([]string{s.root}, pk.Path...), pk.FileName)...)
}

// Open implements store.Store. The Object embeds the *os.File, so it seeks
// and http.ServeContent sends it with sendfile.
func (s *Store) Open(ctx context.Context, mv module.Version) (store.Object, error) {
	if err := mv.Validate(); err != nil {
		return nil, err
	}
	release := s.pin(mv)
	f, fi, err := s.openFile(mv)
	if err != nil {
		release()
		return nil, err
	}
	s.used(mv)
	info := store.Info{Size: fi.Size(), ModTime: fi.ModTime(), SHA256: s.sums.get(s, mv, fi)}
	return &file{File: f, info: info, release: release}, nil
}

func (s *Store) openFile(mv module.Version) (*os.File, fs.FileInfo, error) {
	f, err := os.Open(s.path(mv.RelPath()))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w: %s", store.ErrNotExist, mv)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", mv, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("open %s: %w", mv, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%w: %s is not a regular file", store.ErrNotExist, mv)
	}
	return f, fi, nil
}

// file is an open archive; Close also lets eviction have it again.
type file struct {
	*os.File
	info    store.Info
	release func()
}

var _ syscall.Conn = (*file)(nil) // sendfile needs the descriptor

func (f *file) Info() store.Info { return f.info }

func (f *file) Close() error {
	err := f.File.Close()
	f.release()
	return err
}

// Create implements store.Store: a temporary file in <root>/.tmp (the same
// filesystem, so the final rename is atomic).
func (s *Store) Create(ctx context.Context, mv module.Version, meta store.Meta) (store.Writer, error) {
	if err := mv.Validate(); err != nil {
		return nil, err
	}
	if !module.ValidChecksum(meta.SHA256) {
		return nil, fmt.Errorf("create %s: checksum %q is not a lowercase hex SHA-256", mv, meta.SHA256)
	}
	f, err := os.CreateTemp(s.tmp, fmt.Sprintf("put-%d-*.part", os.Getpid()))
	if err != nil {
		return nil, fmt.Errorf("create %s: %w: %w", mv, store.ErrWrite, err)
	}
	return &writer{s: s, mv: mv, meta: meta, f: f, release: s.pin(mv)}, nil
}

// writer writes one archive's temporary file.
type writer struct {
	s       *Store
	mv      module.Version
	meta    store.Meta
	f       *os.File
	n       int64
	done    bool
	release func()
}

func (w *writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("write %s: %w: writer already finished", w.mv, store.ErrWrite)
	}
	n, err := w.f.Write(p)
	w.n += int64(n)
	if err != nil {
		err = fmt.Errorf("write %s: %w: %w", w.mv, store.ErrWrite, err)
	}
	return n, err
}

// Commit fsyncs the file, writes the checksum record, renames the archive
// into place, then the record, and fsyncs the directories so the renames
// survive a crash. The old record (an archive being replaced) goes first:
// an archive is never seen with a checksum that is not its own, at worst
// with none for a moment.
func (w *writer) Commit(ctx context.Context) error {
	if w.done {
		return fmt.Errorf("commit %s: writer already finished", w.mv)
	}
	w.done = true
	defer w.release()
	published := false
	defer func() {
		if !published {
			w.discard()
		}
	}()
	if w.meta.Size >= 0 && w.n != w.meta.Size {
		return fmt.Errorf("commit %s: %d bytes written, %d announced", w.mv, w.n, w.meta.Size)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("commit %s: %w", w.mv, err)
	}
	s, key := w.s, w.mv.RelPath()
	if err := w.f.Chmod(0o644); err != nil {
		return fmt.Errorf("commit %s: %w: %w", w.mv, store.ErrWrite, err)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("commit %s: fsync: %w: %w", w.mv, store.ErrWrite, err)
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("commit %s: %w: %w", w.mv, store.ErrWrite, err)
	}
	sumFile, err := s.writeTemp([]byte(w.meta.SHA256 + "\n"))
	if err != nil {
		return fmt.Errorf("commit %s: checksum record: %w: %w", w.mv, store.ErrWrite, err)
	}
	defer os.Remove(sumFile) // gone already once imported
	if err := s.d.Erase(key + sumSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("commit %s: replacing the checksum record: %w: %w", w.mv, store.ErrWrite, err)
	}
	if err := s.d.Import(w.f.Name(), key, true); err != nil {
		return fmt.Errorf("commit %s: publish: %w: %w", w.mv, store.ErrWrite, err)
	}
	published = true
	s.sums.forget(w.mv)
	if s.evict != nil {
		s.evict.stored(w.mv, w.n)
		defer s.evict.enforce()
	}
	if err := s.d.Import(sumFile, key+sumSuffix, true); err != nil {
		return fmt.Errorf("commit %s: checksum record: %w: %w", w.mv, store.ErrWrite, err)
	}
	if err := s.syncDirs(filepath.Dir(s.path(key))); err != nil {
		return fmt.Errorf("commit %s: %w: %w", w.mv, store.ErrWrite, err)
	}
	return nil
}

func (w *writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.release()
	return w.discard()
}

func (w *writer) discard() error {
	w.f.Close()
	if err := os.Remove(w.f.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		w.s.log.Warn().Err(err).Str("file", w.f.Name()).Msg("removing temporary file")
		return err
	}
	return nil
}

// writeTemp writes a small file into the temporary directory, fsynced.
func (s *Store) writeTemp(b []byte) (string, error) {
	f, err := os.CreateTemp(s.tmp, fmt.Sprintf("put-%d-*.part", os.Getpid()))
	if err != nil {
		return "", err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// syncDirs fsyncs dir and its ancestors up to the root: Import may have
// created any of them, and a new entry is only durable once its parent
// directory is synced.
func (s *Store) syncDirs(dir string) error {
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

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, mv module.Version) error {
	if err := mv.Validate(); err != nil {
		return err
	}
	err := s.remove(mv)
	if s.evict != nil && (err == nil || errors.Is(err, store.ErrNotExist)) {
		s.evict.removed(mv)
	}
	return err
}

// remove deletes the archive, then its checksum record (which lets diskv
// prune the emptied directories).
func (s *Store) remove(mv module.Version) error {
	key := mv.RelPath()
	err := s.d.Erase(key)
	s.sums.forget(mv)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", store.ErrNotExist, mv)
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", mv, err)
	}
	if err := s.d.Erase(key + sumSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn().Err(err).Str("archive", mv.String()).Msg("removing checksum record of a deleted archive")
	}
	return nil
}

// Walk implements store.Store. It walks the tree itself rather than with
// diskv.Keys, which drops filesystem errors silently: a verify command must
// know when part of the store could not be read.
func (s *Store) Walk(ctx context.Context, fn func(module.Version) error) error {
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

// Ping implements store.Store: one access(2) call, nothing written.
func (s *Store) Ping(ctx context.Context) error {
	if err := syscall.Access(s.root, 2 /* W_OK */); err != nil {
		return fmt.Errorf("archive store %s is not writable: %w", s.root, err)
	}
	return nil
}

// sumCache remembers checksum records already read, keyed by archive and
// validated by the file's size and modification time, so a hit costs no
// extra open of the record. A replaced or touched archive is read again.
type sumCache struct {
	mu sync.Mutex
	m  map[module.Version]cachedSum
}

type cachedSum struct {
	size  int64
	mtime time.Time
	sum   string
}

// maxCachedSums bounds the memory: about 200 bytes an entry.
const maxCachedSums = 1 << 16

func (c *sumCache) get(s *Store, mv module.Version, fi fs.FileInfo) string {
	c.mu.Lock()
	e, ok := c.m[mv]
	c.mu.Unlock()
	if ok && e.size == fi.Size() && e.mtime.Equal(fi.ModTime()) {
		return e.sum
	}
	b, err := os.ReadFile(s.path(mv.RelPath() + sumSuffix))
	if err != nil {
		return "" // stored before records were kept, or mid-replacement
	}
	sum := strings.TrimSpace(string(b))
	if !module.ValidChecksum(sum) {
		s.log.Warn().Str("archive", mv.String()).Msg("malformed checksum record ignored")
		return ""
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedSums {
		c.m = make(map[module.Version]cachedSum)
	}
	c.m[mv] = cachedSum{size: fi.Size(), mtime: fi.ModTime(), sum: sum}
	c.mu.Unlock()
	return sum
}

func (c *sumCache) forget(mv module.Version) {
	c.mu.Lock()
	delete(c.m, mv)
	c.mu.Unlock()
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
