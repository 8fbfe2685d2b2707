package cache_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"moonbit-registry/cache"
	"moonbit-registry/module"
)

// TestStreamCutThenRetried: upstream cuts the first attempt halfway; the
// fetch retries and stores the archive, while a request that followed the
// cut attempt ends with an error, never with a short or mixed archive.
func TestStreamCutThenRetried(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, nil)
	mv := module.Version{Module: "stream/cut", Version: "1.0.0"}
	want := env.publish(mv)
	env.up.queue(cutBody(false))
	obj, stream, _, err := env.cache.GetStream(ctx, mv)
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	if stream != nil {
		got, err = io.ReadAll(stream)
		stream.Close()
		if err == nil && !bytes.Equal(got, want) {
			t.Fatalf("the stream ended cleanly with %d wrong bytes", len(got))
		}
	} else {
		got, err = io.ReadAll(obj)
		obj.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("from the store: %d bytes, %v", len(got), err)
		}
	}
	// Either way the archive is stored, whole, after two requests (Get
	// may still wait for the retry to finish).
	obj, _, err = env.cache.Get(ctx, mv)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if b, _ := io.ReadAll(obj); !bytes.Equal(b, want) {
		t.Fatalf("afterwards: %d bytes", len(b))
	}
	if n := env.up.requests.Load(); n != 2 {
		t.Errorf("upstream requests = %d, want 2", n)
	}
}

// TestStreamOfflineAndHit: without a fetcher, and for a stored archive,
// GetStream answers with the stored object.
func TestStreamOfflineAndHit(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, nil)
	mv := module.Version{Module: "stream/hit", Version: "1.0.0"}
	want := env.publish(mv)
	if _, err := env.cache.Ensure(ctx, mv); err != nil {
		t.Fatal(err)
	}
	obj, stream, outcome, err := env.cache.GetStream(ctx, mv)
	if err != nil || stream != nil || outcome != "hit" {
		t.Fatalf("GetStream of a stored archive: %v %v %s", stream, err, outcome)
	}
	b, _ := io.ReadAll(obj)
	obj.Close()
	if !bytes.Equal(b, want) {
		t.Fatal("wrong bytes")
	}
}

// TestStreamRetryWithOtherBytes: after a cut, the retry sends other
// bytes: the request that followed ends with an error, never with a
// mixed archive.
func TestStreamRetryWithOtherBytes(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, nil)
	mv := module.Version{Module: "stream/mixed", Version: "1.0.0"}
	env.publish(mv)
	env.up.queue(cutBody(false), wrongBytes)
	obj, stream, _, err := env.cache.GetStream(ctx, mv)
	if err == nil && stream != nil {
		_, err = io.ReadAll(stream)
		stream.Close()
	} else if obj != nil {
		obj.Close()
		t.Fatal("a mixed or wrong archive was served from the store")
	}
	if err == nil {
		t.Fatal("the request ended without an error")
	}
	if env.cache.Cached(ctx, mv) {
		t.Error("wrong bytes were stored")
	}
}

// TestStreamCancelledReaderStopsWaiting: a request that leaves while
// upstream stalls stops waiting at once instead of until the fetch ends.
func TestStreamCancelledReaderStopsWaiting(t *testing.T) {
	env := newTestEnv(t, nil)
	mv := module.Version{Module: "stream/stall", Version: "1.0.0"}
	env.publish(mv)
	stall := make(chan struct{})
	defer close(stall)
	env.up.queue(func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body[:len(body)/2])
		http.NewResponseController(w).Flush()
		select {
		case <-stall:
		case <-r.Context().Done():
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	_, stream, _, err := env.cache.GetStream(ctx, mv)
	if err != nil || stream == nil {
		t.Fatalf("no stream: %v", err)
	}
	defer stream.Close()
	done := make(chan error, 1)
	go func() { _, err := io.ReadAll(stream); done <- err }()
	time.Sleep(50 * time.Millisecond) // the reader has the first half and waits
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("reader ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the reader kept waiting after its request left")
	}
}

// flushCounter is a writer without io.ReaderFrom that counts its flushes.
type flushCounter struct {
	bytes.Buffer
	flushes int
}

func (f *flushCounter) Write(p []byte) (int, error) { return f.Buffer.Write(p) }
func (f *flushCounter) Flush()                      { f.flushes++ }

// TestStreamWriteTo: WriteTo sends the whole archive to a writer that
// takes files (from a descriptor of its own) and to one that does not
// (copied, flushed), and ends with ErrStreamCut when the download fails
// its check, before the last byte.
func TestStreamWriteTo(t *testing.T) {
	for _, tc := range []struct {
		name     string
		writer   func() io.Writer
		mismatch bool // upstream sends other bytes, in two halves
	}{
		{name: "takes files", writer: func() io.Writer { return &bytes.Buffer{} }},
		{name: "copied", writer: func() io.Writer { return &flushCounter{} }},
		{name: "takes files, mismatch", writer: func() io.Writer { return &bytes.Buffer{} }, mismatch: true},
		{name: "copied, mismatch", writer: func() io.Writer { return &flushCounter{} }, mismatch: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t, nil)
			mv := module.Version{Module: "stream/writeto", Version: "1.0.0"}
			want := env.publish(mv)
			release := make(chan struct{})
			if tc.mismatch {
				env.up.queue(func(w http.ResponseWriter, r *http.Request, body []byte) {
					w.Header().Set("Content-Length", strconv.Itoa(len(body)))
					w.Write([]byte("tampered"))
					w.Write(body[8 : len(body)/2])
					http.NewResponseController(w).Flush()
					<-release // the request follows the first half
					w.Write(body[len(body)/2:])
				})
			}
			_, stream, _, err := env.cache.GetStream(context.Background(), mv)
			close(release)
			if err != nil || stream == nil {
				t.Fatalf("GetStream: %v, stream %v", err, stream != nil)
			}
			defer stream.Close()
			w := tc.writer()
			n, err := stream.WriteTo(w)
			var got []byte
			switch w := w.(type) {
			case *bytes.Buffer:
				got = w.Bytes()
			case *flushCounter:
				got = w.Bytes()
				if w.flushes == 0 {
					t.Error("the copy was never flushed")
				}
			}
			if int64(len(got)) != n {
				t.Errorf("WriteTo said %d bytes, wrote %d", n, len(got))
			}
			if tc.mismatch {
				if !errors.Is(err, cache.ErrStreamCut) || len(got) >= len(want) {
					t.Fatalf("mismatch: %d of %d bytes, err %v; want fewer and ErrStreamCut", len(got), len(want), err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%d of %d bytes, err %v", len(got), len(want), err)
			}
		})
	}
}
