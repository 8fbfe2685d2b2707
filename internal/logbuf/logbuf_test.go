package logbuf

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the flush goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestBufferedThenFlushed(t *testing.T) {
	var out syncBuffer
	w := New(&out)
	w.Write([]byte("one\n"))
	if out.String() != "" {
		t.Fatal("a line went out at once")
	}
	deadline := time.Now().Add(3 * FlushEvery)
	for out.String() == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if out.String() != "one\n" {
		t.Fatalf("after the flush interval: %q", out.String())
	}
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() { defer wg.Done(); w.Write([]byte("line\n")) }()
	}
	wg.Wait()
	w.Close()
	if n := strings.Count(out.String(), "line\n"); n != 100 {
		t.Errorf("after Close: %d of 100 lines written", n)
	}
}
