package testupstream

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Path prefixes for scoping faults with [OnPrefix].
const (
	PrefixIndex    = "/git/"
	PrefixArchives = "/user/"
	PrefixSymbols  = "/symbols.zip"
	PrefixAssets   = "/assets/"
	PrefixAPI      = "/api/"
)

type faultKind int

const (
	faultFail faultKind = iota
	faultHang
	faultDelay
	faultReset
	faultTruncate
	faultWrongBytes
)

// fault is one injected misbehaviour; see the [Faults] methods that add it.
type fault struct {
	kind   faultKind
	status int
	delay  time.Duration
	prefix string // "" matches every path
	cutAt  int64  // Truncate and ResetMidBody: body bytes sent; 0 is half
	left   int    // requests still to affect; 0 means until cleared
}

// FaultOption narrows a fault.
type FaultOption func(*fault)

// OnPrefix limits a fault to request paths (percent-decoded) starting with
// prefix, e.g. [PrefixArchives]. Without it a fault hits every route.
func OnPrefix(prefix string) FaultOption {
	return func(f *fault) { f.prefix = prefix }
}

// Times limits a fault to the next n matching requests, after which the
// upstream recovers by itself. Without it (or with n <= 0) the fault stays
// until [Faults.Clear].
func Times(n int) FaultOption {
	return func(f *fault) {
		if n > 0 {
			f.left = n
		}
	}
}

// Faults holds the faults injected into the upstream's answers and
// applies them to requests: every route is subject to them, or only the
// paths under a prefix ([OnPrefix]). Its methods are safe for concurrent
// use.
type Faults struct {
	logf func(format string, args ...any)

	mu     sync.Mutex
	faults []*fault // oldest first
}

func (fa *Faults) add(f fault, opts []FaultOption) {
	for _, o := range opts {
		o(&f)
	}
	fa.mu.Lock()
	defer fa.mu.Unlock()
	fa.faults = append(fa.faults, &f)
}

// FailWith answers matching requests with status (e.g. 500, 503, 404) and a
// short text body instead of the real response.
func (fa *Faults) FailWith(status int, opts ...FaultOption) {
	fa.add(fault{kind: faultFail, status: status}, opts)
}

// Hang makes matching requests block without answering until the client
// gives up, the upstream goes [Upstream.Down], or it is closed.
func (fa *Faults) Hang(opts ...FaultOption) {
	fa.add(fault{kind: faultHang}, opts)
}

// Delay holds matching requests for d before serving them normally.
func (fa *Faults) Delay(d time.Duration, opts ...FaultOption) {
	fa.add(fault{kind: faultDelay, delay: d}, opts)
}

// ResetMidBody sends the real status, headers and about half the body of
// matching responses, then resets the TCP connection (RST).
func (fa *Faults) ResetMidBody(opts ...FaultOption) {
	fa.add(fault{kind: faultReset}, opts)
}

// Truncate declares the full Content-Length of matching responses but sends
// only about half the body, then closes the connection normally.
func (fa *Faults) Truncate(opts ...FaultOption) {
	fa.add(fault{kind: faultTruncate}, opts)
}

// TruncateAt is Truncate sending the first n bytes of the body (all of
// it when the body is shorter).
func (fa *Faults) TruncateAt(n int64, opts ...FaultOption) {
	fa.add(fault{kind: faultTruncate, cutAt: n}, opts)
}

// WrongBytes sends matching responses with the right headers and length
// but every body byte altered, so checksums fail.
func (fa *Faults) WrongBytes(opts ...FaultOption) {
	fa.add(fault{kind: faultWrongBytes}, opts)
}

// Clear removes every injected fault. It does not bring a downed
// upstream back; use [Upstream.Up] for that.
func (fa *Faults) Clear() {
	fa.mu.Lock()
	defer fa.mu.Unlock()
	fa.faults = nil
}

// take returns the newest fault matching path and uses up one of its
// requests, so a later, narrower fault wins over an older, broader one.
func (fa *Faults) take(path string) (fault, bool) {
	fa.mu.Lock()
	defer fa.mu.Unlock()
	for i := len(fa.faults) - 1; i >= 0; i-- {
		f := fa.faults[i]
		if !strings.HasPrefix(path, f.prefix) {
			continue
		}
		got := *f
		if f.left > 0 {
			f.left--
			if f.left == 0 {
				fa.faults = append(fa.faults[:i], fa.faults[i+1:]...)
			}
		}
		return got, true
	}
	return fault{}, false
}

// serve applies f to one request; next serves the real response. stop is
// closed when the upstream goes down or closes.
func (fa *Faults) serve(w http.ResponseWriter, r *http.Request, f fault, stop <-chan struct{}, next http.Handler) {
	switch f.kind {
	case faultFail:
		http.Error(w, fmt.Sprintf("testupstream: injected %d", f.status), f.status)
	case faultHang:
		select {
		case <-r.Context().Done():
		case <-stop:
			// Returning would send an empty 200; drop the connection
			// instead, as a server going away does.
			panic(http.ErrAbortHandler)
		}
	case faultDelay:
		t := time.NewTimer(f.delay)
		defer t.Stop()
		select {
		case <-t.C:
			next.ServeHTTP(w, r)
		case <-r.Context().Done():
		case <-stop:
			panic(http.ErrAbortHandler)
		}
	case faultWrongBytes:
		rec := newRecorder()
		next.ServeHTTP(rec, r)
		rec.finish()
		body := rec.body.Bytes()
		for i := range body {
			body[i] ^= 0x5a // every byte differs, the length does not
		}
		copyHeader(w.Header(), rec.header)
		w.WriteHeader(rec.status)
		_, _ = w.Write(body)
	case faultReset, faultTruncate:
		rec := newRecorder()
		next.ServeHTTP(rec, r)
		rec.finish()
		fa.cutResponse(w, rec, f.kind == faultReset, f.cutAt, stop)
	}
}

// cutResponse writes rec's status and headers, with its full Content-Length,
// and cutAt bytes of its body (0: half) straight to the connection, then
// drops the connection: with a reset (RST) or a plain close.
func (fa *Faults) cutResponse(w http.ResponseWriter, rec *recorder, reset bool, cutAt int64, stop <-chan struct{}) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "testupstream: cannot hijack", http.StatusInternalServerError)
		return
	}
	conn, bufw, err := hj.Hijack()
	if err != nil {
		fa.logf("hijack: %v", err)
		return
	}
	defer conn.Close()
	body := rec.body.Bytes()
	h := rec.header.Clone()
	if h.Get("Content-Length") == "" {
		h.Set("Content-Length", strconv.Itoa(len(body)))
	}
	h.Del("Transfer-Encoding")
	h.Set("Connection", "close")
	fmt.Fprintf(bufw, "HTTP/1.1 %d %s\r\n", rec.status, http.StatusText(rec.status))
	_ = h.Write(bufw)
	_, _ = bufw.WriteString("\r\n")
	cut := int64(len(body) / 2)
	if cutAt > 0 {
		cut = min(cutAt, int64(len(body)))
	}
	_, _ = bufw.Write(body[:cut])
	if err := bufw.Flush(); err != nil {
		return
	}
	if !reset {
		return
	}
	// Give the client a moment to read the status and headers, so the
	// failure shows up while reading the body rather than before it; a
	// reset makes the kernel drop data the client has not read yet.
	t := time.NewTimer(50 * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-stop:
	}
	if tc, ok := conn.(interface{ SetLinger(int) error }); ok {
		_ = tc.SetLinger(0) // close sends RST instead of FIN
	}
}

// recorder buffers a response so a fault can alter it before sending.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: http.Header{}} }

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}

func (r *recorder) finish() {
	if r.status == 0 {
		r.status = http.StatusOK
	}
}

func copyHeader(dst, src http.Header) {
	for k, vv := range src {
		dst[k] = append([]string(nil), vv...)
	}
}
