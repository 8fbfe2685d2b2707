package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"moonbit-registry/cache"
	"moonbit-registry/module"
	"moonbit-registry/private"
	"moonbit-registry/store"
)

// statusOf is the HTTP status of an error of the archive, pass-through
// and publish routes: the one table. 404 is only for what does not exist;
// what a retry may fix is 502, 503 or 504 (moon retries those, never 507);
// anything unknown is our own failure, 500.
func statusOf(err error) int {
	switch {
	case errors.Is(err, module.ErrBadName), errors.Is(err, private.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, private.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, private.ErrNotReserved), errors.Is(err, private.ErrReadOnly):
		return http.StatusForbidden
	case errors.Is(err, private.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, cache.ErrNotFound), errors.Is(err, private.ErrUnknown):
		return http.StatusNotFound
	case errors.Is(err, store.ErrChecksumMismatch):
		return http.StatusBadGateway
	case errors.Is(err, cache.ErrUpstreamUnavailable), errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, module.ErrIndexUnavailable), errors.Is(err, private.ErrIndexPending):
		return http.StatusServiceUnavailable
	case errors.Is(err, store.ErrWrite):
		// Not 507: moon retries 503 and never 507, and a full disk can be
		// freed while it retries.
		return http.StatusServiceUnavailable
	case errors.Is(err, cache.ErrUpstream):
		return http.StatusBadGateway
	default:
		// Our own failure (the store, a malformed index entry): not
		// upstream's, and its text may name local paths.
		return http.StatusInternalServerError
	}
}

// upstreamFailure says what kind of failure an upstream exchange of the
// pass-through is, for statusOf: no answer at all (refused, reset, timed
// out, cut) is cache.ErrUpstreamUnavailable; anything else (a bad redirect,
// a malformed response) cache.ErrUpstream.
func upstreamFailure(err error) error {
	var op *net.OpError
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &op) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, cache.ErrUpstreamUnavailable) {
		return fmt.Errorf("%w: %w", cache.ErrUpstreamUnavailable, err)
	}
	return fmt.Errorf("%w: %w", cache.ErrUpstream, err)
}
