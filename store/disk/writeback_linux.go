package disk

import (
	"os"
	"syscall"
)

// startWriteback asks the kernel to start writing n bytes of f from off
// to the disk, without waiting: the fsync at commit then has only the
// tail left to write.
func startWriteback(f *os.File, off, n int64) {
	syscall.SyncFileRange(int(f.Fd()), off, n, 0x2 /* SYNC_FILE_RANGE_WRITE */)
}
