package disk

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"moonbit-registry/module"
)

// writeSum records sum on the open file (see sumAttr).
func writeSum(f *os.File, sum string) error {
	return fdCall(f, func(fd int) error { return unix.Fsetxattr(fd, sumAttr, []byte(sum), 0) })
}

// readSum is the checksum recorded on the open archive, or "" when it has
// none (stored before checksums were kept) or a malformed one.
func (s *Store) readSum(f *os.File, mv module.Version) string {
	var buf [64]byte
	var n int
	err := fdCall(f, func(fd int) (err error) {
		n, err = unix.Fgetxattr(fd, sumAttr, buf[:])
		return err
	})
	switch {
	case errors.Is(err, unix.ENODATA):
		return ""
	case err != nil || !module.ValidChecksum(string(buf[:n])):
		s.log.Warn().Err(err).Str("archive", mv.String()).Msg("unreadable checksum attribute ignored")
		return ""
	}
	return string(buf[:n])
}

// fdCall runs fn on f's descriptor without taking it out of the runtime's
// hands (os.File.Fd would switch it to blocking mode).
func fdCall(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// probeXattr reports whether the filesystem of dir keeps user extended
// attributes, by setting one on a temporary file there.
func probeXattr(dir string) (bool, error) {
	f, err := os.CreateTemp(dir, fmt.Sprintf("put-%d-*.probe", os.Getpid()))
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
