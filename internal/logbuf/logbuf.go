// Package logbuf buffers a log stream that is written once per request
// (the access log): lines collect in memory and go out at least every
// FlushEvery and when Close is called, instead of one write system call
// each.
package logbuf

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// FlushEvery is the longest a written line waits before it is written out.
const FlushEvery = time.Second

// bufferSize is how much collects before a write goes out early.
const bufferSize = 64 << 10

// Writer is a buffered, periodically flushed io.Writer, safe for
// concurrent use.
type Writer struct {
	mu   sync.Mutex
	bw   *bufio.Writer
	stop chan struct{}
	done chan struct{}
}

// New starts a Writer in front of out. Close it to write out the rest.
func New(out io.Writer) *Writer {
	w := &Writer{bw: bufio.NewWriterSize(out, bufferSize), stop: make(chan struct{}), done: make(chan struct{})}
	go w.flushLoop()
	return w
}

func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bw.Write(p)
}

// Flush writes out what is buffered.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bw.Flush()
}

func (w *Writer) flushLoop() {
	defer close(w.done)
	t := time.NewTicker(FlushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			w.Flush()
		case <-w.stop:
			return
		}
	}
}

// Close stops the periodic flush and writes out the rest. Writes after
// Close still go out at the next Flush or when the buffer fills.
func (w *Writer) Close() error {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	return w.Flush()
}
