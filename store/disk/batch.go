package disk

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"moonbit-registry/internal/spool"
	"moonbit-registry/store"
)

// Batch lets a caller that stores many archives in one go (mirror) pay
// for the directory fsyncs that make each commit survive a power cut once
// per directory instead of once per archive: under the returned context,
// Commit still fsyncs the archive's file before renaming it into place
// (so a visible archive is never torn), but leaves the fsync of its
// directories to flush, which syncs each of them once. Archives are
// visible at Commit as always; they are durable once flush returned nil,
// and the caller reports them stored only then. A crash (kill -9) loses
// nothing either way; a power cut may lose the directory entries of a
// batch never reported done, which a rerun fetches again.
//
// The batch keeps at most maxBatchDirs directories: a commit that would
// add more syncs them all first, so memory stays bounded.
func (s *Store) Batch(ctx context.Context) (context.Context, func() error) {
	b := &dirBatch{dirs: map[string]struct{}{}, limit: maxBatchDirs, root: s.root}
	return context.WithValue(ctx, batchKey{s}, b), b.flush
}

// maxBatchDirs bounds a batch's directory set; from syncfsFrom on, a
// flush syncs the whole filesystem at once.
const (
	maxBatchDirs = 4096
	syncfsFrom   = 64
)

// batchKey finds a Store's batch in a context.
type batchKey struct{ s *Store }

// dirBatch is the set of directories whose fsync a batch owes.
type dirBatch struct {
	mu    sync.Mutex
	dirs  map[string]struct{}
	limit int    // maxBatchDirs
	root  string // the store's root, for syncfs
}

// add records dir and its ancestors up to root. It returns "" when they
// are owed by the batch, or dir when the batch is full: then the caller
// syncs dir's chain itself, and the batch syncs the rest first.
func (b *dirBatch) add(dir, root string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.dirs) >= b.limit {
		if err := b.flushLocked(); err != nil {
			return dir // synced by the caller; the error shows there too
		}
	}
	for {
		b.dirs[dir] = struct{}{}
		if dir == root || !strings.HasPrefix(dir, root) {
			return ""
		}
		dir = filepath.Dir(dir)
	}
}

func (b *dirBatch) flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked()
}

// flushLocked fsyncs every directory the batch owes; the ones that fail
// stay owed. A directory gone meanwhile (eviction emptied it) owes
// nothing: its parent's fsync covers its removal. Past syncfsFrom
// directories, one syncfs(2) of the store's filesystem does it instead:
// thousands of fsyncs in a row took a tenth of a whole mirror run.
func (b *dirBatch) flushLocked() error {
	if len(b.dirs) >= syncfsFrom {
		if err := syncFS(b.root); err == nil {
			clear(b.dirs)
			return nil
		}
		// Not possible here: one directory at a time.
	}
	var errs []error
	for dir := range b.dirs {
		if err := syncDir(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		delete(b.dirs, dir)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: making stored archives durable: %w", store.ErrWrite, err)
	}
	return nil
}

// syncFS is syncfs(2) of the filesystem holding dir.
func syncFS(dir string) error {
	d, err := spool.OpenFile(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	return unix.Syncfs(int(d.Fd()))
}
