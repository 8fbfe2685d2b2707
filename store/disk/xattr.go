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
// fgetxattr(2) directly so that a hit allocates nothing for it. known is
// false when the attribute could not be read (an I/O error): the answer
// says nothing lasting about the file.
func (s *Store) readSum(f *os.File, mv module.Version) (sum string, known bool) {
	var buf [64]byte
	r, _, errno := unix.Syscall6(unix.SYS_FGETXATTR, f.Fd(), uintptr(unsafe.Pointer(&sumAttrName[0])),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
	var err error
	if errno != 0 {
		err = errno
	}
	return s.sumFrom(buf[:], int(r), err, mv)
}

// readSumAt is readSum of the archive at path, without opening it.
func (s *Store) readSumAt(path string, mv module.Version) (sum string, known bool) {
	var buf [64]byte
	n, err := unix.Getxattr(path, sumAttr, buf[:])
	return s.sumFrom(buf[:], n, err, mv)
}

// sumFrom interprets what reading the attribute gave: n bytes of buf, or
// err.
func (s *Store) sumFrom(buf []byte, n int, err error, mv module.Version) (sum string, known bool) {
	switch {
	case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EOPNOTSUPP):
		return "", true // none recorded, or a filesystem without attributes
	case err != nil:
		s.log.Warn().Err(err).Str("archive", mv.String()).Msg("unreadable checksum attribute ignored")
		return "", false
	case n != sha256.Size:
		s.log.Warn().Int("bytes", n).Str("archive", mv.String()).Msg("malformed checksum attribute ignored")
		return "", true
	}
	return hex.EncodeToString(buf[:n]), true
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
// with the identity of the file it was read from (fileID: inode, size,
// modification and change times): a hit on the same file needs no
// fgetxattr. The store writes the attribute only on a temporary file,
// before it is renamed into place, so a stored archive's attribute changes
// only with its inode (a re-fetch renames a new file over it); ctime also
// catches most changes made in place by hand. Reads that failed are not
// remembered.
type sumMemo struct {
	mu sync.RWMutex
	m  map[module.Version]sumEntry
}

type sumEntry struct {
	id  fileID
	sum string
}

// sumMemoMax bounds the memo (about 200 bytes an entry); when full it
// starts over.
const sumMemoMax = 1 << 16

// sumOf is the checksum of mv's archive, the file fi describes: from the
// memo when fi is the file it was read from, else read.
func (s *Store) sumOf(mv module.Version, fi fs.FileInfo, read func() (string, bool)) string {
	id, ok := identify(fi)
	if !ok {
		sum, _ := read()
		return sum
	}
	s.sums.mu.RLock()
	e, ok := s.sums.m[mv]
	s.sums.mu.RUnlock()
	if ok && e.id == id {
		return e.sum
	}
	sum, known := read()
	if !known {
		return sum
	}
	s.sums.mu.Lock()
	if s.sums.m == nil || len(s.sums.m) >= sumMemoMax {
		s.sums.m = make(map[module.Version]sumEntry)
	}
	s.sums.m[mv] = sumEntry{id: id, sum: sum}
	s.sums.mu.Unlock()
	return sum
}
