package disk

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"syscall"

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
// The batch owes at most maxBatchDirs directories: a commit that finds it
// full flushes it first, so memory stays bounded. Once a flush failed, the
// batch stops deferring (commits sync their own directories again) and
// keeps what it owes for the final flush, which reports the failure.
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
	mu     sync.Mutex
	dirs   map[string]struct{}
	limit  int    // maxBatchDirs
	root   string // the store's root: where the chains of directories end
	failed bool   // a flush failed: commits sync for themselves
}

// owe records dir and its ancestors up to the root as owed, and reports
// whether it did; when it did not (a flush failed), the caller syncs them.
func (b *dirBatch) owe(dir string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.failed && len(b.dirs) >= b.limit {
		b.failed = b.flushLocked() != nil
	}
	if b.failed {
		return false
	}
	upTo(dir, b.root, func(d string) error {
		b.dirs[d] = struct{}{}
		return nil
	})
	return true
}

func (b *dirBatch) flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked()
}

// flushLocked fsyncs every directory the batch owes; the ones that fail
// stay owed. A directory gone meanwhile (eviction emptied it) owes
// nothing: its parent's fsync covers its removal. From syncfsFrom
// directories on, one syncfs(2) of the store's filesystem does it instead
// (thousands of fsyncs in a row took a tenth of a mirror run), unless the
// system has none.
func (b *dirBatch) flushLocked() error {
	if len(b.dirs) >= syncfsFrom {
		err := syncWhole(b.root)
		if err == nil {
			clear(b.dirs)
			return nil
		}
		if !unsupported(err) {
			return fmt.Errorf("%w: making stored archives durable: %w", store.ErrWrite, err)
		}
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

// syncWhole syncs the filesystem holding dir (syncFS).
func syncWhole(dir string) error {
	d, err := openDir(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return syncFS(int(d.Fd()))
}

// unsupported reports an error that says the call does not exist here.
func unsupported(err error) bool {
	return errors.Is(err, errors.ErrUnsupported) || errors.Is(err, syscall.ENOSYS) ||
		errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EOPNOTSUPP)
}
