package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"moonbit-registry/module"
)

// getStreaming starts a GET of an archive and returns the response with
// its body still open.
func getStreaming(t *testing.T, url string) *http.Response {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	return resp
}

// TestArchiveMissStreams: a miss reaches the client while upstream is
// still sending it, a request that joins late gets it too from the start,
// upstream is asked once, and the archive is a hit afterwards.
func TestArchiveMissStreams(t *testing.T) {
	f := newArchiveFixture(t, false, []module.Version{nestedMV})
	f.midway = make(chan struct{})
	want := f.content(nestedMV)
	u := f.srv.URL + oneSegment(nestedMV)

	first := getStreaming(t, u)
	if got := first.Header.Get("Content-Length"); got != "22000" {
		t.Errorf("Content-Length %q, want upstream's 22000", got)
	}
	// Half the body is upstream's so far; the client has bytes of it
	// before upstream sends the rest.
	head := make([]byte, 1000)
	if _, err := io.ReadFull(first.Body, head); err != nil {
		t.Fatalf("no bytes while upstream is halfway: %v", err)
	}
	late := getStreaming(t, u)
	close(f.midway)
	rest, err := io.ReadAll(first.Body)
	if err != nil || !bytes.Equal(append(head, rest...), want) {
		t.Fatalf("first client: %d bytes, %v; want the archive", len(head)+len(rest), err)
	}
	if body, err := io.ReadAll(late.Body); err != nil || !bytes.Equal(body, want) {
		t.Fatalf("late client: %d bytes, %v; want the archive", len(body), err)
	}
	// Stored by the time the clients had their last byte: served from the
	// store (the access log may lag a moment behind).
	for i := range 100 {
		if resp, body := do(t, http.MethodGet, u, nil); resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
			t.Fatalf("then: %d, %d bytes", resp.StatusCode, len(body))
		}
		if got := f.log.waitOutcomes(t, oneSegment(nestedMV), 3+i); got[len(got)-1] == "hit" {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := f.requests.Load(); n != 1 {
		t.Errorf("upstream requests = %d, want 1", n)
	}
}

// TestArchiveStreamedMismatchAborts: wrong bytes from upstream are cut off
// before the end (the client sees a broken transfer, never a whole wrong
// archive) and nothing is stored.
func TestArchiveStreamedMismatchAborts(t *testing.T) {
	for _, announced := range []bool{true, false} {
		f := newArchiveFixture(t, false, []module.Version{nestedMV}, nestedMV)
		f.unannounced.Store(!announced)
		f.midway = make(chan struct{}) // the verdict comes after the client has bytes
		u := f.srv.URL + oneSegment(nestedMV)
		resp := getStreaming(t, u)
		close(f.midway)
		body, err := io.ReadAll(resp.Body)
		if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("announced=%v: read %d bytes, err %v; want a broken transfer", announced, len(body), err)
		}
		if len(body) >= len(f.content(nestedMV)) {
			t.Errorf("announced=%v: the client got all %d bytes", announced, len(body))
		}
		// Nothing was stored: a later request asks upstream again (and
		// gets a 502, or a broken transfer, depending on how far the
		// download is when the verdict comes). One sent at once may still
		// share the failing fetch, which ends a moment after the client
		// saw it fail.
		for range 100 {
			if again, err := http.Get(u); err == nil {
				io.ReadAll(again.Body)
				again.Body.Close()
			}
			if f.requests.Load() > 1 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if n := f.requests.Load(); n != 2 {
			t.Errorf("announced=%v: upstream requests = %d, want 2", announced, n)
		}
	}
}

// TestArchiveStreamWithoutLength: without a length from upstream the miss
// goes out chunked, whole.
func TestArchiveStreamWithoutLength(t *testing.T) {
	t.Parallel()
	f := newArchiveFixture(t, false, []module.Version{nestedMV})
	f.unannounced.Store(true)
	resp, body := do(t, http.MethodGet, f.srv.URL+oneSegment(nestedMV), nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, f.content(nestedMV)) || resp.ContentLength != -1 {
		t.Fatalf("%d, %d bytes, length %d", resp.StatusCode, len(body), resp.ContentLength)
	}
}

// TestArchiveStreamHalfClosedClient: a client that half-closes its side
// once the answer has begun (which ends the request's context in
// net/http) never gets a short chunked body that ends as if it were
// whole: it gets the archive, or a broken transfer.
func TestArchiveStreamHalfClosedClient(t *testing.T) {
	f := newArchiveFixture(t, false, []module.Version{nestedMV})
	f.unannounced.Store(true)
	f.midway = make(chan struct{})
	conn, err := net.Dial("tcp", strings.TrimPrefix(f.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: registry\r\nUser-Agent: mooncake/0.1.0\r\n\r\n", oneSegment(nestedMV))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("no streamed answer: %v %v", resp, err)
	}
	conn.(*net.TCPConn).CloseWrite()
	time.Sleep(50 * time.Millisecond) // the server sees the half-close while upstream waits
	close(f.midway)
	body, err := io.ReadAll(resp.Body)
	if want := f.content(nestedMV); err == nil && !bytes.Equal(body, want) {
		t.Fatalf("a body of %d bytes ended cleanly; the archive has %d", len(body), len(want))
	}
}
