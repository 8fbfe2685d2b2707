package upstream

import (
	"cmp"
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"
)

// Health is what the latest contact with upstream said. Every request
// made through Transport is recorded (archive fetches, API and other
// pass-through requests), and index syncs through Observe, so what a
// status page shows follows upstream within one request, not one sync
// interval.
type Health struct {
	mu     sync.Mutex
	at     time.Time
	reason string // "" when the latest contact got an answer
}

// Observe records a contact with upstream at now: err nil when upstream
// answered (any status below 500), else why it did not.
func (h *Health) Observe(now time.Time, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if now.Before(h.at) {
		return // an older contact finishing late says nothing newer
	}
	h.at = now
	h.reason = ""
	if err != nil {
		h.reason = cmp.Or(err.Error(), "failed")
	}
}

// Last is the latest contact: when, whether upstream answered, and why
// not. Before any contact at is zero and ok false: nothing is known.
func (h *Health) Last() (at time.Time, ok bool, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.at, !h.at.IsZero() && h.reason == "", h.reason
}

// Transport wraps next (nil: NewTransport()) so that every round trip is
// observed: a response below 500 is an upstream that answers; a
// connection error, a timeout (the caller's deadline included), a 5xx or
// a body that breaks off is one that does not. Requests whose caller left
// (cancelled) are not counted either way.
func (h *Health) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = NewTransport()
	}
	return healthTransport{h: h, next: next}
}

type healthTransport struct {
	h    *Health
	next http.RoundTripper
}

func (t healthTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	switch {
	case errors.Is(req.Context().Err(), context.Canceled):
	case err != nil:
		t.h.Observe(start, err)
	case resp.StatusCode >= 500:
		t.h.Observe(start, &statusError{resp.Status})
	default:
		t.h.Observe(start, nil)
		resp.Body = &healthBody{ReadCloser: resp.Body, h: t.h, req: req}
	}
	return resp, err
}

// healthBody records a body that breaks off as a failed contact.
type healthBody struct {
	io.ReadCloser
	h   *Health
	req *http.Request
}

func (b *healthBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(b.req.Context().Err(), context.Canceled) {
		b.h.Observe(time.Now(), err)
	}
	return n, err
}

type statusError struct{ status string }

func (e *statusError) Error() string { return "upstream answered " + e.status }
