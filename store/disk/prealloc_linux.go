//go:build linux

package disk

import (
	"errors"
	"os"
	"syscall"
)

// preallocate reserves size bytes for f, so that a store that cannot take
// the archive (a full disk, a file size limit) says so before a byte is
// written, and a miss can be answered with a status rather than a
// transfer cut short. Filesystems that cannot preallocate are let be.
func preallocate(f *os.File, size int64) error {
	if size <= 0 {
		return nil
	}
	err := syscall.Fallocate(int(f.Fd()), 0, 0, size)
	for errors.Is(err, syscall.EINTR) { // tmpfs gives up when a signal comes
		err = syscall.Fallocate(int(f.Fd()), 0, 0, size)
	}
	if errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EINVAL) {
		return nil
	}
	return err
}
