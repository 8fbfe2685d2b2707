package disk

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"moonbit-registry/module"
)

// The descriptors below come from f.Fd(): for a regular file (never in the
// runtime's poller) it changes nothing, and it costs no allocation, which a
// hit on the archive path would otherwise pay.

// writeSum records sum on the open file (see sumAttr).
func writeSum(f *os.File, sum string) error {
	return unix.Fsetxattr(int(f.Fd()), sumAttr, []byte(sum), 0)
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
	case err != nil || !module.ValidChecksum(string(buf[:n])):
		s.log.Warn().Err(err).Str("archive", mv.String()).Msg("unreadable checksum attribute ignored")
		return ""
	}
	return string(buf[:n])
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
	err = writeSum(f, "probe")
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EPERM):
		return false, nil
	}
	return false, fmt.Errorf("probing extended attributes in %s: %w", dir, err)
}
