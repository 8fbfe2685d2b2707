package disk

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"moonbit-registry/store"
)

// metaAttr holds a stored body's response metadata (BodyMeta as JSON): set
// on the temporary file before the publishing rename, like an archive's
// checksum, so body and metadata appear and are replaced together.
const metaAttr = "user.moonbit-registry.meta"

// maxMetaSize bounds the metadata kept with a body; a filesystem block
// holds it on every filesystem that keeps attributes.
const maxMetaSize = 2 << 10

// Bodies keeps pass-through response bodies (symbols.zip, prebuilt
// assets) as files, one per upstream URL, so that a hit is served from disk
// and a miss streams to the client and to a temporary file at once. Files
// are written like archives: a locked temporary file, renamed into place
// once complete.
type Bodies struct {
	dir, tmp  string
	usedSpace // what is kept, for a size limit shared with the archives; read-only flag and log
}

// NewBodies opens (creating if needed) a body store in dir, removing what
// writers that died left. Read-only, it writes nothing and Create fails.
// A filesystem without extended attributes cannot keep bodies: an error
// says so, and the caller streams without storing.
func NewBodies(dir string, readOnly bool, log zerolog.Logger) (*Bodies, error) {
	if dir == "" {
		return nil, errors.New("body store: empty directory")
	}
	b := &Bodies{dir: dir, tmp: filepath.Join(dir, tempDirName), usedSpace: usedSpace{readOnly: readOnly, log: log}}
	if readOnly {
		return b, nil
	}
	if err := sweepTemp(b.tmp, log); err != nil {
		return nil, fmt.Errorf("body store: %w", err)
	}
	if err := os.MkdirAll(b.tmp, 0o755); err != nil {
		return nil, fmt.Errorf("body store: %w", err)
	}
	ok, err := probeXattr(b.tmp)
	if err != nil {
		return nil, fmt.Errorf("body store: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("body store: the filesystem of %s does not keep extended attributes", dir)
	}
	if err := b.scan(dir, b.tmp); err != nil {
		return nil, fmt.Errorf("body store: %w", err)
	}
	return b, nil
}

// path is where the body for key (an upstream URL) lives.
func (b *Bodies) path(key string) string { return hashedPath(b.dir, key) }

// Open returns the stored body for key and its metadata; a missing one is
// an error wrapping fs.ErrNotExist. The caller closes the file.
func (b *Bodies) Open(key string) (io.ReadSeekCloser, store.BodyMeta, error) {
	p := b.path(key)
	f, err := os.Open(p)
	if err != nil {
		return nil, store.BodyMeta{}, err
	}
	b.used(p)
	meta, err := readMeta(f)
	if err != nil {
		f.Close()
		return nil, store.BodyMeta{}, fmt.Errorf("%w: stored body without usable metadata: %v", fs.ErrNotExist, err)
	}
	return f, meta, nil
}

func readMeta(f *os.File) (store.BodyMeta, error) {
	buf := make([]byte, maxMetaSize)
	n, err := unix.Fgetxattr(int(f.Fd()), metaAttr, buf)
	if err != nil {
		return store.BodyMeta{}, err
	}
	var m store.BodyMeta
	err = json.Unmarshal(buf[:n], &m)
	return m, err
}

func writeMeta(f *os.File, m store.BodyMeta) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(data) > maxMetaSize {
		return fmt.Errorf("response metadata of %d bytes is over %d", len(data), maxMetaSize)
	}
	return unix.Fsetxattr(int(f.Fd()), metaAttr, data, 0)
}

// Revalidated records new metadata for a stored body (after upstream
// answered 304): the same bytes, fresh again.
func (b *Bodies) Revalidated(key string, m store.BodyMeta) error {
	if b.readOnly {
		return nil
	}
	f, err := os.Open(b.path(key))
	if err != nil {
		return err
	}
	defer f.Close()
	return writeMeta(f, m)
}

// Create starts writing a body; nothing is visible before Commit.
func (b *Bodies) Create() (store.BodyWriter, error) {
	if b.readOnly {
		return nil, errors.New("body store is open read-only")
	}
	f, err := createTemp(b.tmp, "body-*.part")
	if err != nil {
		return nil, err
	}
	return &BodyWriter{b: b, f: f}, nil
}

// BodyWriter receives one body.
type BodyWriter struct {
	b    *Bodies
	f    *os.File
	n    int64
	done bool
}

func (w *BodyWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.n += int64(n)
	return n, err
}

// Commit publishes the body under key with its metadata, replacing what
// was there. It is not fsynced: a body torn by a crash is an upstream
// response fetched again, never an archive.
func (w *BodyWriter) Commit(key string, m store.BodyMeta) error {
	if w.done {
		return errors.New("body writer already finished")
	}
	w.done = true
	if err := writeMeta(w.f, m); err != nil {
		w.discard()
		return err
	}
	if err := w.f.Chmod(0o644); err != nil {
		w.discard()
		return err
	}
	p := w.b.path(key)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		w.discard()
		return err
	}
	// Renamed while open, so the temporary file stays locked until it is
	// no longer one (see createTemp).
	if err := os.Rename(w.f.Name(), p); err != nil {
		w.discard()
		return err
	}
	usage := w.n
	if fi, err := w.f.Stat(); err == nil {
		usage = diskUsage(fi)
	}
	w.b.add(p, usage)
	return w.f.Close()
}

// Abort discards what was written; after Commit it does nothing.
func (w *BodyWriter) Abort() {
	if !w.done {
		w.done = true
		w.discard()
	}
}

func (w *BodyWriter) discard() {
	defer w.f.Close()
	if err := os.Remove(w.f.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		w.b.log.Warn().Err(err).Str("file", w.f.Name()).Msg("removing temporary file")
	}
}
