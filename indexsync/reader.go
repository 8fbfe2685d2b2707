package indexsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"moonbit-registry/manifest"
	"moonbit-registry/module"

	"github.com/rs/zerolog"
)

// Lookups reads modules and versions from the mirror's checked-out .index
// files, with parses kept in an LRU. It notices when another process moved
// main (see refWatch). All methods are safe for concurrent use.
type Lookups struct {
	dir   string
	log   zerolog.Logger
	state *state

	// tree guards the work tree: a sync holds it exclusively only while it
	// moves main and checks files out; readers hold it shared while they
	// read a file, so they never see a half-written .index file.
	tree sync.RWMutex
	// incomplete is set while the work tree may hold files a failed
	// checkout left half-written.
	incomplete atomic.Bool

	cache *lru
	refs  refWatch // main as last seen on disk, see noticeOutsideSync
}

func newLookups(dir string, st *state, log zerolog.Logger) *Lookups {
	l := &Lookups{dir: dir, log: log, state: st, cache: newLRU(cacheMaxEntries, cacheMaxBytes)}
	l.refs.epoch = time.Now()
	return l
}

// maxIndexFile bounds how much of one .index file is read; the largest real
// one is far below this.
const maxIndexFile = 16 << 20

// ErrTreeIncomplete: a checkout failed part way (a full disk), so index
// files may be half-written; lookups wait for the next successful sync.
var ErrTreeIncomplete = fmt.Errorf("%w: the index work tree is incomplete after a failed checkout; the next sync repairs it", module.ErrIndexUnavailable)

// Versions returns a module's versions, oldest first in order of first
// appearance in its .index file; a later line for the same version
// replaces the earlier one in place. The slice is shared with the cache:
// callers must not modify it or the entries in it.
func (l *Lookups) Versions(ctx context.Context, mod string) ([]manifest.Entry, error) {
	return l.versions(ctx, mod, false)
}

// versions is Versions; recent looks for another process's sync at most
// once per refCheckInterval (see refWatch) instead of every time.
func (l *Lookups) versions(ctx context.Context, mod string, recent bool) ([]manifest.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.tree.RLock()
	defer l.tree.RUnlock()
	if recent {
		l.noticeOutsideSync()
	} else {
		l.noticeOutsideSyncNow()
	}
	// Only names that passed the check below are cached, so a cached
	// module needs no check (a hit's name was checked by the handler).
	if vs, ok := l.cache.get(mod); ok {
		return vs, nil
	}
	if err := module.ValidateModule(mod); err != nil {
		return nil, err
	}
	gen := l.cache.generation()
	if !hasRepo(l.dir) {
		return nil, ErrNotReady
	}
	if l.incomplete.Load() {
		return nil, ErrTreeIncomplete
	}
	data, err := l.readIndexFile(mod)
	if err != nil {
		return nil, err
	}
	vs := parseIndex(mod, data, l.log)
	l.cache.put(mod, vs, int64(len(data)), gen)
	return vs, nil
}

// readIndexFile reads user/<module>.index through an os.Root at Dir, so
// neither the (already validated) name nor a symlink in the tree can reach
// a file outside the mirror.
func (l *Lookups) readIndexFile(mod string) ([]byte, error) {
	root, err := os.OpenRoot(l.dir)
	if err != nil {
		return nil, fmt.Errorf("open index mirror: %w", err)
	}
	defer root.Close()
	f, err := root.Open(module.IndexPath(mod))
	if err != nil {
		// ENOTDIR (a file where a directory of the path would be) means
		// the module is not there either.
		if errors.Is(err, fs.ErrNotExist) || isNotDir(err) {
			return nil, fmt.Errorf("%w: %s", module.ErrModuleNotFound, mod)
		}
		return nil, fmt.Errorf("read index of %s: %w", mod, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read index of %s: %w", mod, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s", module.ErrModuleNotFound, mod)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxIndexFile+1))
	if err != nil {
		return nil, fmt.Errorf("read index of %s: %w", mod, err)
	}
	if len(data) > maxIndexFile {
		return nil, fmt.Errorf("index of %s is larger than %d bytes", mod, maxIndexFile)
	}
	return data, nil
}

// Lookup returns one version of a module. ok is false when the module or
// the version is not in the index; err is for real failures (and for names
// the grammar rejects, wrapping module.ErrBadName).
func (l *Lookups) Lookup(ctx context.Context, mod, version string) (manifest.Entry, bool, error) {
	return l.lookup(ctx, mod, version, false)
}

// lookup is Lookup; recent as for versions.
func (l *Lookups) lookup(ctx context.Context, mod, version string, recent bool) (manifest.Entry, bool, error) {
	vs, err := l.versions(ctx, mod, recent)
	if err == nil {
		for _, v := range vs {
			if v.Version == version {
				return v, true, nil // parsed versions passed the grammar
			}
		}
	}
	// Not found: a version the grammar rejects says so.
	if verr := module.ValidateVersion(version); verr != nil {
		return manifest.Entry{}, false, verr
	}
	if err != nil && !errors.Is(err, module.ErrModuleNotFound) {
		return manifest.Entry{}, false, err
	}
	return manifest.Entry{}, false, nil
}

// Checksum returns the published SHA-256 (lowercase hex) of a version's
// archive. ok is false for an unknown module or version. A checksum that is
// not 64 lowercase hex digits is an error: no archive could match it.
func (l *Lookups) Checksum(ctx context.Context, mod, version string) (sum string, ok bool, err error) {
	return l.checksum(ctx, mod, version, false)
}

// RecentChecksum is Checksum as of at most refCheckInterval ago when
// another process moved main meanwhile (see refWatch): what an archive hit
// checks its stored checksum against, where looking at the ref file every
// time cost a tenth of the hit. A client that pulled the index through the
// git endpoint since then made it look (Freshen).
func (l *Lookups) RecentChecksum(ctx context.Context, mod, version string) (sum string, ok bool, err error) {
	return l.checksum(ctx, mod, version, true)
}

func (l *Lookups) checksum(ctx context.Context, mod, version string, recent bool) (string, bool, error) {
	v, ok, err := l.lookup(ctx, mod, version, recent)
	if err != nil || !ok {
		return "", false, err
	}
	if !module.ValidChecksum(v.Checksum) {
		return "", false, fmt.Errorf("index entry %s@%s has malformed checksum %q", mod, version, v.Checksum)
	}
	return v.Checksum, true, nil
}

// Modules lists every module in the index, sorted. Files whose
// names do not pass the module grammar are skipped; symlinks are not
// followed.
func (l *Lookups) Modules(ctx context.Context) ([]string, error) {
	l.tree.RLock()
	defer l.tree.RUnlock()
	if !hasRepo(l.dir) {
		return nil, ErrNotReady
	}
	root, err := os.OpenRoot(l.dir)
	if err != nil {
		return nil, fmt.Errorf("open index mirror: %w", err)
	}
	defer root.Close()
	var mods []string
	err = fs.WalkDir(root.FS(), "user", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == "user" && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll // an empty index
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.Type().IsRegular() && strings.HasSuffix(p, ".index") {
			if mod, ok := moduleFromPath(p); ok {
				mods = append(mods, mod)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list index modules: %w", err)
	}
	sort.Strings(mods)
	return mods, nil
}
