package disk

import (
	"container/list"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// usedSpace keeps the files of a cache that shares the archive store's
// size limit (the pass-through's kept bodies and API answers): their disk
// usage and recency, so the limit can count them and evict the least
// recently used first (SharedSpace).
type usedSpace struct {
	mu       sync.Mutex
	entries  map[string]*list.Element // by path; values are *spaceEntry
	order    list.List                // front: most recently used
	total    int64
	grew     func() // called after a file was added; may evict
	readOnly bool
	log      zerolog.Logger
}

type spaceEntry struct {
	path string
	size int64
}

// scan learns the files below dir (skip left out), oldest first.
func (u *usedSpace) scan(dir, skip string) error {
	type found struct {
		path string
		size int64
		mod  time.Time
	}
	var all []found
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p == skip {
				return filepath.SkipDir
			}
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.Mode().IsRegular() {
			all = append(all, found{p, diskUsage(fi), fi.ModTime()})
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(all, func(x, y found) int { return x.mod.Compare(y.mod) })
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, f := range all {
		u.addLocked(f.path, f.size)
	}
	return nil
}

// Bytes is the disk usage of what is kept (SharedSpace).
func (u *usedSpace) Bytes() int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.total
}

// EvictOldest removes the least recently used file (SharedSpace): it is
// fetched again when asked for.
func (u *usedSpace) EvictOldest() (int64, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	el := u.order.Back()
	if el == nil || u.readOnly {
		return 0, false
	}
	ent := el.Value.(*spaceEntry)
	u.removeLocked(ent.path)
	if err := os.Remove(ent.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		u.log.Warn().Err(err).Str("file", ent.path).Msg("evicting a kept pass-through response")
	}
	u.log.Info().Str("file", ent.path).Int64("bytes", ent.size).Msg("pass-through response evicted to honour cache.max_size")
	return ent.size, true
}

// ShareLimit puts what is kept under a size limit shared with something
// else (Store.ShareLimit), which returns what to call when it grew.
func (u *usedSpace) ShareLimit(share func(SharedSpace) func()) {
	grew := share(u)
	u.mu.Lock()
	u.grew = grew
	u.mu.Unlock()
}

// add notes a file of size bytes at path (new or replaced) as just used.
func (u *usedSpace) add(path string, size int64) {
	u.mu.Lock()
	u.addLocked(path, size)
	grew := u.grew
	u.mu.Unlock()
	if grew != nil {
		grew()
	}
}

func (u *usedSpace) addLocked(path string, size int64) {
	u.removeLocked(path)
	if u.entries == nil {
		u.entries = map[string]*list.Element{}
	}
	u.entries[path] = u.order.PushFront(&spaceEntry{path: path, size: size})
	u.total += size
}

// used moves path to the front of the recency order.
func (u *usedSpace) used(path string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if el, ok := u.entries[path]; ok {
		u.order.MoveToFront(el)
	}
}

// forget drops path (removed by its owner).
func (u *usedSpace) forget(path string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.removeLocked(path)
}

func (u *usedSpace) removeLocked(path string) {
	if el, ok := u.entries[path]; ok {
		u.total -= el.Value.(*spaceEntry).size
		u.order.Remove(el)
		delete(u.entries, path)
	}
}
