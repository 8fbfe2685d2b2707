//go:build linux

package proxy

import (
	"net"
	"net/http"
	"syscall"
)

// cork holds partial TCP segments of the request's connection back until
// the returned uncork: net/http writes a response's headers on their own
// before sendfile sends the body, and corked they leave in one segment with
// the body's first bytes (what nginx's tcp_nopush does). Connections that
// are not plain TCP (TLS, tests' in-memory ones) are left as they are.
func cork(r *http.Request) (uncork func()) {
	c, ok := r.Context().Value(connKey{}).(*net.TCPConn)
	if !ok {
		return func() {}
	}
	raw, err := c.SyscallConn()
	if err != nil || setCork(raw, 1) != nil {
		return func() {}
	}
	return func() { setCork(raw, 0) }
}

func setCork(raw syscall.RawConn, on int) error {
	var serr error
	err := raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK, on)
	})
	if err != nil {
		return err
	}
	return serr
}
