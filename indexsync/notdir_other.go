//go:build !unix

package indexsync

func isNotDir(err error) bool { return false }
