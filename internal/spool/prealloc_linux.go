//go:build linux

package spool

import (
	"errors"
	"os"
	"syscall"
)

// Preallocate reserves size bytes for f (its length becomes size), so that
// a disk that cannot take them (full, or a file size limit) says so before
// a byte is written: a miss is then answered with a status rather than a
// transfer cut short. Filesystems that cannot preallocate are let be.
func Preallocate(f *os.File, size int64) error {
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
