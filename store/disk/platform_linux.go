//go:build linux

package disk

import (
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// The store's calls that only Linux has; platform_other.go stands in
// elsewhere.

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

// startWriteback asks the kernel to start writing n bytes of f from off
// to the disk, without waiting: the fsync at commit then has only the
// tail left to write. It is a hint; a failure changes nothing.
func startWriteback(f *os.File, off, n int64) {
	unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
