//go:build linux

package disk

import (
	"io/fs"
	"syscall"

	"golang.org/x/sys/unix"
)

// fileID tells one file's state from another's (see sumMemo).
type fileID struct {
	ino          uint64
	size         int64
	ctime, mtime int64
}

func identify(fi fs.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{ino: st.Ino, size: st.Size, ctime: st.Ctim.Nano(), mtime: st.Mtim.Nano()}, true
}

// syncFS is syncfs(2) of the filesystem holding the open directory d.
func syncFS(fd int) error { return unix.Syncfs(fd) }
