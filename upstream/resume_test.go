package upstream

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"moonbit-registry/module"
)

// cutConfig is how a cutServer behaves.
type cutConfig struct {
	ranges       bool // honours Range
	advertises   bool // says Accept-Ranges: bytes
	etag         string
	lastModified bool
	recent       bool // the Last-Modified is the response's Date
	changes      bool
}

// cutServer serves one archive; its first answer is cut after cut bytes
// (the connection dropped). ranges says whether it honours Range;
// etag/lastModified are its validators, changed after the cut when
// changes is set. It counts body bytes sent and requests.
type cutServer struct {
	cutConfig
	data []byte
	cut  int

	mu       sync.Mutex
	requests int
	sent     int
}

func (s *cutServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	first := s.requests == 1
	etag := s.etag
	if s.changes && !first && etag != "" {
		etag = `"changed"`
	}
	s.mu.Unlock()
	if etag != "" {
		w.Header().Set("ETag", etag)
	}
	if s.advertises {
		w.Header().Set("Accept-Ranges", "bytes")
	}
	var modified time.Time
	if s.lastModified {
		modified = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		if s.recent {
			modified = time.Now().UTC().Truncate(time.Second)
			w.Header().Set("Date", modified.Format(http.TimeFormat))
		}
		if s.changes && !first {
			modified = modified.Add(time.Hour)
		}
	}
	cw := &countingWriter{ResponseWriter: w, s: s}
	switch {
	case first:
		w.Header().Set("Content-Length", strconv.Itoa(len(s.data)))
		if !modified.IsZero() {
			w.Header().Set("Last-Modified", modified.Format(http.TimeFormat))
		}
		cw.Write(s.data[:s.cut])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the connection drops mid-body
	case s.ranges:
		http.ServeContent(cw, r, "", modified, bytes.NewReader(s.data))
	default:
		r.Header.Del("Range")
		http.ServeContent(cw, r, "", modified, bytes.NewReader(s.data))
	}
}

type countingWriter struct {
	http.ResponseWriter
	s *cutServer
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.s.mu.Lock()
	c.s.sent += n
	c.s.mu.Unlock()
	return n, err
}

// TestFetchResumesACutBody: a body cut mid-way costs upstream the rest
// (one Range request guarded by If-Range) when upstream honours ranges
// and the archive has not changed; otherwise the fetch starts over. The
// sink always ends with the whole archive.
func TestFetchResumesACutBody(t *testing.T) {
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	cut := len(data) * 9 / 10
	for _, tt := range []struct {
		name         string
		cfg          cutConfig
		wantRequests int
		wantSinks    int // sink calls: 1 when resumed, 2 when started over
		wantSentMax  int // body bytes upstream sent, at most
	}{
		{"ETag, ranges honoured: resumed", cutConfig{ranges: true, advertises: true, etag: `"v1"`}, 2, 1, len(data) + 1024},
		{"Last-Modified, ranges honoured: resumed", cutConfig{ranges: true, advertises: true, lastModified: true}, 2, 1, len(data) + 1024},
		{"ranges advertised but ignored: started over", cutConfig{advertises: true, etag: `"v1"`}, 3, 2, 3 * len(data)},
		{"archive changed: If-Range sends it whole, started over", cutConfig{ranges: true, advertises: true, etag: `"v1"`, changes: true}, 3, 2, 3 * len(data)},
		{"no Accept-Ranges: started over without asking", cutConfig{ranges: true, etag: `"v1"`}, 2, 2, 2 * len(data)},
		{"weak ETag: started over", cutConfig{ranges: true, advertises: true, etag: `W/"v1"`}, 2, 2, 2 * len(data)},
		{"Last-Modified as recent as the Date (weak): started over", cutConfig{ranges: true, advertises: true, lastModified: true, recent: true}, 2, 2, 2 * len(data)},
		{"no validator: started over", cutConfig{ranges: true, advertises: true}, 2, 2, 2 * len(data)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := &cutServer{cutConfig: tt.cfg, data: data, cut: cut}
			ts := httptest.NewServer(srv)
			defer ts.Close()
			f, err := NewFetcher(FetcherOptions{DownloadURL: ts.URL, Retries: 2, RetryBackoff: time.Millisecond, Logger: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			sinks := 0
			err = f.Fetch(context.Background(), module.Version{Module: "a/b", Version: "1.0.0"}, func(_ context.Context, body io.Reader, size int64) error {
				sinks++
				got.Reset()
				_, err := io.Copy(&got, body)
				return err
			})
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if !bytes.Equal(got.Bytes(), data) {
				t.Fatalf("the sink got %d bytes, not the archive", got.Len())
			}
			srv.mu.Lock()
			defer srv.mu.Unlock()
			if srv.requests != tt.wantRequests || sinks != tt.wantSinks || srv.sent > tt.wantSentMax {
				t.Errorf("requests %d (want %d), sink calls %d (want %d), bytes sent %d (want at most %d)",
					srv.requests, tt.wantRequests, sinks, tt.wantSinks, srv.sent, tt.wantSentMax)
			}
			if int64(srv.requests) != f.Attempts() {
				t.Errorf("Attempts() = %d, upstream saw %d", f.Attempts(), srv.requests)
			}
		})
	}
}
