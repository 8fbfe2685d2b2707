package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// OpenFile is os.OpenFile (close-on-exec) without its attempt to put the
// file in the runtime's network poller, which fails for regular files and
// directories after four fcntl and an epoll_ctl: a cost archive hits,
// temporary files and directory fsyncs paid on every call. The descriptor
// stays blocking, as os.OpenFile leaves a regular file's.
func OpenFile(path string, flags int, perm uint32) (*os.File, error) {
	for {
		fd, err := syscall.Open(path, flags|syscall.O_CLOEXEC, perm)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		return os.NewFile(uintptr(fd), path), nil
	}
}

// CreateTemp is os.CreateTemp (the last "*" in pattern replaced by a
// random number, mode 0600, read-write) through OpenFile.
func CreateTemp(dir, pattern string) (*os.File, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	i := strings.LastIndex(pattern, "*")
	prefix, suffix := pattern, ""
	if i >= 0 {
		prefix, suffix = pattern[:i], pattern[i+1:]
	}
	for range 100 {
		name := filepath.Join(dir, prefix+strconv.FormatUint(rand.Uint64(), 36)+suffix)
		f, err := OpenFile(name, syscall.O_RDWR|syscall.O_CREAT|syscall.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, err
	}
	return nil, fmt.Errorf("create a temporary file in %s: no free name", dir)
}
