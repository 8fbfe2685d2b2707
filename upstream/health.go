package upstream

import (
	"cmp"
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
// not. A zero at means no contact yet.
func (h *Health) Last() (at time.Time, ok bool, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.at, h.reason == "", h.reason
}

// Transport wraps next (nil: NewTransport()) so that every round trip is
// observed: a response below 500 is an upstream that answers; a
// connection error, a timeout or a 5xx is one that does not. Requests
// whose caller left are not counted either way.
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
	case req.Context().Err() != nil:
	case err != nil:
		t.h.Observe(start, err)
	case resp.StatusCode >= 500:
		t.h.Observe(start, &statusError{resp.Status})
	default:
		t.h.Observe(start, nil)
	}
	return resp, err
}

type statusError struct{ status string }

func (e *statusError) Error() string { return "upstream answered " + e.status }
