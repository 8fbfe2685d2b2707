// Package disk is the local-disk archive store: archives as plain files at
// <root>/<owner>/<rest>/<version>.zip (a layout a person can browse and a
// static file server can serve), each carrying the checksum it was
// committed with as an extended attribute, and an optional size limit with
// least-recently-used eviction (evict.go).
package disk

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/peterbourgon/diskv/v3"
	"github.com/rs/zerolog"

	"moonbit-registry/internal/spool"
	"moonbit-registry/module"
	"moonbit-registry/store"
)

// tempDirName is where archives are written before they are committed. It
// starts with '.', which no owner name may (see module.ValidateModule), so
// no request can ever map onto a temporary file.
const tempDirName = ".tmp"

// sumAttr is the extended attribute that holds the SHA-256 an archive was
// committed with (its 32 raw bytes). It is set on the temporary file before the rename
// that publishes it, so bytes and checksum appear (and are replaced)
// together, with no second file per archive.
const sumAttr = "user.moonbit-registry.sha256"

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
	// ReadOnly opens the store without writing anything, ever (serving a
	// read-only copy offline): no sweep, no size limit; Create and Delete
	// fail with store.ErrWrite, and Ping is nil, since serving what is
	// there is all that is asked.
	ReadOnly bool
	// Keep, if set, names archives the size limit never evicts (private
	// modules: nothing could fetch them again).
	Keep   func(module.Version) bool
	Logger zerolog.Logger
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
	root     string
	tmp      string
	d        *diskv.Diskv
	log      zerolog.Logger
	xattr    bool     // the filesystem keeps extended attributes
	readOnly bool     // Options.ReadOnly
	evict    *evictor // nil without a size limit
	sums     sumMemo  // checksums read from attributes (xattr.go)
}

// New opens (creating if needed) a store rooted at opts.Root. Temporary
// files left by an earlier process that died mid-write are removed: they
// were never committed, so nothing refers to them. Writers hold a lock on
// their temporary files, so a process that starts while another (a second
// mirror run, a server, another container on the same volume) writes to
// the same root leaves the other's in-progress files alone. With a size
// limit, the store is walked in the background to learn its size (see
// evict.go).
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
	if opts.ReadOnly {
		s.readOnly, s.xattr = true, true // attributes are read where there are any
		return s, nil
	}
	if err := sweepTemp(tmp, opts.Logger); err != nil {
		return nil, fmt.Errorf("disk store: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("disk store: %w", err)
	}
	if s.xattr, err = probeXattr(tmp); err != nil {
		return nil, fmt.Errorf("disk store: %w", err)
	}
	if !s.xattr {
		opts.Logger.Warn().Str("dir", root).Msg("the archive store's filesystem does not keep extended attributes: " +
			"archives are stored without their checksum, and a re-released version is only caught by the index sync's check")
	}
	if opts.MaxBytes > 0 {
		s.evict = newEvictor(s, opts.MaxBytes, opts.TouchInterval, opts.Logger)
		s.evict.keep = opts.Keep
		go s.evict.scan() // ends on its own once the store is walked
	}
	return s, nil
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

// path is where diskv puts key (keyToPathKey keeps the key's own
// directories), without the slices a diskv.PathKey costs on every hit.
func (s *Store) path(key string) string {
	return s.root + string(filepath.Separator) + filepath.FromSlash(key)
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
	info := s.describe(mv, fi, func() (string, bool) { return s.readSum(f, mv) })
	return &file{File: f, info: info, release: release}, nil
}

// describe is the Info of mv's archive, fi its stat, recording a use of it
// for eviction; readSum reads its checksum attribute, when the memo cannot
// answer (see sumOf).
func (s *Store) describe(mv module.Version, fi fs.FileInfo, readSum func() (string, bool)) store.Info {
	s.used(mv)
	info := store.Info{Size: fi.Size(), ModTime: fi.ModTime()}
	if s.xattr {
		info.SHA256 = s.sumOf(mv, fi, readSum)
	}
	return info
}

// Stat describes mv's archive without opening it (store.Statter): one
// stat, and the checksum from memory or its attribute. A mirror run asks
// this of every archive it selects, before and after fetching it.
func (s *Store) Stat(ctx context.Context, mv module.Version) (store.Info, error) {
	if err := mv.Validate(); err != nil {
		return store.Info{}, err
	}
	p := s.path(mv.RelPath())
	fi, err := os.Stat(p)
	if err := asArchive(mv, "stat", fi, err); err != nil {
		return store.Info{}, err
	}
	return s.describe(mv, fi, func() (string, bool) { return s.readSumAt(p, mv) }), nil
}

// openFile opens an archive for reading and stats it once. It opens with
// open(2) and os.NewFile rather than os.Open, which on Linux tries to put
// every file in the network poller (four fcntl and a failing epoll_ctl per
// hit, for a regular file that never blocks in the poller's sense).
func (s *Store) openFile(mv module.Version) (*os.File, fs.FileInfo, error) {
	f, err := openRead(s.path(mv.RelPath()))
	if err != nil {
		return nil, nil, asArchive(mv, "open", nil, err)
	}
	fi, err := f.Stat()
	if err := asArchive(mv, "open", fi, err); err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// asArchive turns what looking up mv's file gave (fi, or err from op) into
// the store's answer: nil for an archive; a file that is missing, or is
// not a regular file, is no archive (store.ErrNotExist).
func asArchive(mv module.Version, op string, fi fs.FileInfo, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s", store.ErrNotExist, mv)
	case err != nil:
		return fmt.Errorf("%s %s: %w", op, mv, err)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%w: %s is not a regular file", store.ErrNotExist, mv)
	}
	return nil
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
	if s.readOnly {
		return nil, fmt.Errorf("create %s: %w: the store is open read-only", mv, store.ErrWrite)
	}
	f, err := createTemp(s.tmp, "put-*.part")
	if err != nil {
		return nil, fmt.Errorf("create %s: %w: %w", mv, store.ErrWrite, err)
	}
	if err := spool.Preallocate(f, meta.Size); err != nil {
		f.Close()
		os.Remove(f.Name())
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
	flushed int64 // bytes handed to startWriteback
	done    bool
	release func()
}

// writebackEvery is how much of a large archive is written before the
// kernel is asked to start writing it out, so that its commit's fsync
// does not write all of it at the end.
const writebackEvery = 1 << 20

func (w *writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("write %s: %w: writer already finished", w.mv, store.ErrWrite)
	}
	n, err := w.f.Write(p)
	w.n += int64(n)
	if w.n-w.flushed >= writebackEvery {
		startWriteback(w.f, w.flushed, w.n-w.flushed)
		w.flushed = w.n
	}
	if err != nil {
		err = fmt.Errorf("write %s: %w: %w", w.mv, store.ErrWrite, err)
	}
	return n, err
}

// Commit records the checksum on the file, fsyncs it, renames it into
// place and fsyncs the directories so the rename survives a crash.
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
	if s.xattr {
		if err := writeSum(w.f, w.meta.SHA256); err != nil {
			return fmt.Errorf("commit %s: recording the checksum: %w: %w", w.mv, store.ErrWrite, err)
		}
	}
	if err := w.f.Chmod(0o644); err != nil {
		return fmt.Errorf("commit %s: %w: %w", w.mv, store.ErrWrite, err)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("commit %s: fsync: %w: %w", w.mv, store.ErrWrite, err)
	}
	usage := w.n // what it takes on disk, once the blocks are allocated
	if s.evict != nil {
		if fi, err := w.f.Stat(); err == nil {
			usage = diskUsage(fi)
		}
	}
	// Renamed while still open, so the lock that keeps other processes'
	// sweeps away (createTemp) holds until it is no longer a temporary file.
	if err := s.d.Import(w.f.Name(), key, true); err != nil {
		return fmt.Errorf("commit %s: publish: %w: %w", w.mv, store.ErrWrite, err)
	}
	published = true
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("commit %s: %w: %w", w.mv, store.ErrWrite, err)
	}
	if s.evict != nil {
		s.evict.stored(w.mv, usage)
		defer s.evict.enforce()
	}
	dir := filepath.Dir(s.path(key))
	if b, ok := ctx.Value(batchKey{s}).(*dirBatch); ok && b.owe(dir) {
		return nil // owed to the batch's flush
	}
	if err := s.syncDirs(dir); err != nil {
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

// discard removes the temporary file, then closes it (and so unlocks it).
func (w *writer) discard() error {
	defer w.f.Close()
	if err := os.Remove(w.f.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		w.s.log.Warn().Err(err).Str("file", w.f.Name()).Msg("removing temporary file")
		return err
	}
	return nil
}

// syncDirs fsyncs dir and its ancestors up to the root: Import may have
// created any of them, and a new entry is only durable once its parent
// directory is synced.
func (s *Store) syncDirs(dir string) error { return syncUpTo(dir, s.root) }

// syncUpTo fsyncs dir and its ancestors up to root.
func syncUpTo(dir, root string) error { return upTo(dir, root, syncDir) }

// upTo calls fn for dir and each of its ancestors up to root, stopping at
// the first error.
func upTo(dir, root string, fn func(dir string) error) error {
	for {
		if err := fn(dir); err != nil {
			return err
		}
		if dir == root || !strings.HasPrefix(dir, root) {
			return nil
		}
		dir = filepath.Dir(dir)
	}
}

func syncDir(dir string) error {
	d, err := openDir(dir)
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
	if s.readOnly {
		return fmt.Errorf("delete %s: %w: the store is open read-only", mv, store.ErrWrite)
	}
	err := s.remove(mv)
	if s.evict != nil && (err == nil || errors.Is(err, store.ErrNotExist)) {
		s.evict.removed(mv)
	}
	return err
}

// remove deletes the archive; diskv prunes the emptied directories.
func (s *Store) remove(mv module.Version) error {
	err := s.d.Erase(mv.RelPath())
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", store.ErrNotExist, mv)
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", mv, err)
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

// Ping implements store.Store: one access(2) call, nothing written; nil
// for a store opened read-only.
func (s *Store) Ping(ctx context.Context) error {
	if s.readOnly {
		return nil
	}
	if err := syscall.Access(s.root, 2 /* W_OK */); err != nil {
		return fmt.Errorf("archive store %s is not writable: %w", s.root, err)
	}
	return nil
}

// createTemp creates a temporary file in dir and takes an exclusive
// advisory lock on it, held until it is closed: sweepTemp in any process,
// in any PID namespace, leaves a locked file alone. A sweep that removed
// the file between its creation and the lock is noticed (no links left)
// and the creation retried.
func createTemp(dir, pattern string) (*os.File, error) {
	for range 3 {
		f, err := spool.CreateTemp(dir, pattern)
		if err != nil {
			return nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			os.Remove(f.Name())
			if errors.Is(err, syscall.EWOULDBLOCK) {
				continue // a sweep is looking at it this very moment
			}
			return nil, fmt.Errorf("locking %s: %w", f.Name(), err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink == 0 {
			f.Close() // swept away before it was locked
			continue
		}
		return f, nil
	}
	return nil, fmt.Errorf("temporary files in %s keep disappearing", dir)
}

// sweepTemp removes what writers that are gone left in dir: every file
// whose lock can be taken (its writer died before Commit or Abort), and
// anything else that is not a locked file. Files another process is
// writing right now are locked and stay.
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
		p := filepath.Join(dir, e.Name())
		gone, err := removeUnlocked(p, e)
		if err != nil {
			return fmt.Errorf("removing leftover %s: %w", e.Name(), err)
		}
		if gone {
			removed++
		}
	}
	if removed > 0 {
		log.Info().Int("files", removed).Str("dir", dir).Msg("removed leftover temporary files")
	}
	return nil
}

// removeUnlocked removes p unless it is a file some process holds locked.
func removeUnlocked(p string, e fs.DirEntry) (bool, error) {
	if !e.Type().IsRegular() {
		return true, os.RemoveAll(p)
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil // its writer finished meanwhile
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return false, nil // being written
		}
		return false, err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	return true, nil
}

// openRead is os.Open without the poller registration (see openFile).
func openRead(path string) (*os.File, error) {
	return spool.OpenFile(path, syscall.O_RDONLY, 0)
}

// openDir opens a directory, to fsync it, the same way.
func openDir(dir string) (*os.File, error) {
	return spool.OpenFile(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
}
