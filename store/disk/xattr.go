package disk

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"moonbit-registry/module"
)

// The descriptors below come from f.Fd(): for a regular file (never in the
// runtime's poller) it changes nothing, and it costs no allocation, which a
// hit on the archive path would otherwise pay.

// writeSum records sum (hex) on the open file (see sumAttr), as its 32 raw
// bytes: small enough to live inside an ext4 inode, where 64 hex digits
// would take a 4 KiB block of their own per archive.
func writeSum(f *os.File, sum string) error {
	raw, err := hex.DecodeString(sum)
	if err != nil || len(raw) != sha256.Size {
		return fmt.Errorf("checksum %q is not a hex SHA-256", sum)
	}
	return unix.Fsetxattr(int(f.Fd()), sumAttr, raw, 0)
}

// sumAttrName is sumAttr as the C string the kernel takes, made once:
// unix.Fgetxattr would convert (allocate) it on every archive hit.
var sumAttrName = []byte(sumAttr + "\x00")

// readSum is the checksum recorded on the open archive, or "" when it has
// none (stored before checksums were kept) or a malformed one. It calls
// fgetxattr(2) directly so that a hit allocates nothing for it.
func (s *Store) readSum(f *os.File, mv module.Version) string {
	var buf [64]byte
	r, _, errno := unix.Syscall6(unix.SYS_FGETXATTR, f.Fd(), uintptr(unsafe.Pointer(&sumAttrName[0])),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
	n, err := int(r), error(nil)
	if errno != 0 {
		err = errno
	}
	switch {
	case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EOPNOTSUPP):
		return "" // none recorded, or a filesystem without attributes
	case err != nil || n != sha256.Size:
		s.log.Warn().Err(err).Str("archive", mv.String()).Msg("unreadable checksum attribute ignored")
		return ""
	}
	return hex.EncodeToString(buf[:n])
}

// readSumAt is readSum of the archive at path, without opening it.
func (s *Store) readSumAt(path string, mv module.Version) string {
	var buf [64]byte
	n, err := unix.Getxattr(path, sumAttr, buf[:])
	switch {
	case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EOPNOTSUPP):
		return ""
	case err != nil || n != sha256.Size:
		s.log.Warn().Err(err).Str("archive", mv.String()).Msg("unreadable checksum attribute ignored")
		return ""
	}
	return hex.EncodeToString(buf[:n])
}

// probeXattr reports whether the filesystem of dir keeps user extended
// attributes, by setting one on a temporary file there.
func probeXattr(dir string) (bool, error) {
	f, err := createTemp(dir, "probe-*")
	if err != nil {
		return false, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	err = writeSum(f, strings.Repeat("0", 2*sha256.Size))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EPERM):
		return false, nil
	}
	return false, fmt.Errorf("probing extended attributes in %s: %w", dir, err)
}

// sumMemo remembers the checksums read from archives' attributes, each
// with the identity of the file it was read from (inode, size, change and
// modification times): a hit on a file not touched since needs no
// fgetxattr, and a file replaced (a re-fetch renames a new inode over it)
// or changed (an attribute written changes ctime) is read again.
type sumMemo struct {
	mu sync.RWMutex
	m  map[module.Version]sumEntry
}

type sumEntry struct {
	ino          uint64
	size         int64
	ctime, mtime int64
	sum          string
}

// sumMemoMax bounds the memo (about 200 bytes an entry); when full it
// starts over.
const sumMemoMax = 1 << 16

// sumOf is readSum, remembered (see sumMemo). fi is f's Stat.
func (s *Store) sumOf(f *os.File, fi fs.FileInfo, mv module.Version) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return s.readSum(f, mv)
	}
	return s.rememberedSum(mv, st, func() string { return s.readSum(f, mv) })
}

// rememberedSum is the checksum of mv's archive, the file st describes:
// from the memo when st is the file it was read from, else read.
func (s *Store) rememberedSum(mv module.Version, st *syscall.Stat_t, read func() string) string {
	id := sumEntry{ino: st.Ino, size: st.Size, ctime: st.Ctim.Nano(), mtime: st.Mtim.Nano()}
	s.sums.mu.RLock()
	e, ok := s.sums.m[mv]
	s.sums.mu.RUnlock()
	if ok && e.ino == id.ino && e.size == id.size && e.ctime == id.ctime && e.mtime == id.mtime {
		return e.sum
	}
	id.sum = read()
	s.sums.mu.Lock()
	if s.sums.m == nil || len(s.sums.m) >= sumMemoMax {
		s.sums.m = make(map[module.Version]sumEntry)
	}
	s.sums.m[mv] = id
	s.sums.mu.Unlock()
	return id.sum
}
