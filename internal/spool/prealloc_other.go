//go:build !linux

package spool

import "os"

// Preallocate does nothing where fallocate is not available.
func Preallocate(f *os.File, size int64) error { return nil }
