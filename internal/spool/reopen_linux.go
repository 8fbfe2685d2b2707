package spool

import (
	"os"
	"strconv"
	"syscall"
)

// Reopen opens f again for reading, through /proc/self/fd, so the new
// descriptor has an offset of its own (also when f is unlinked); nil when
// it cannot (no /proc).
func Reopen(f *os.File) *os.File {
	g, err := OpenFile("/proc/self/fd/"+strconv.Itoa(int(f.Fd())), syscall.O_RDONLY, 0)
	if err != nil {
		return nil
	}
	return g
}
