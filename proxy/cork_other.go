//go:build !linux

package proxy

import "net/http"

// cork does nothing where TCP_CORK is not available.
func cork(r *http.Request) (uncork func()) { return func() {} }
