package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"moonbit-registry/internal/spool"
	"moonbit-registry/module"
)

// A download is one fetch's bytes as they arrive, for the requests that
// stream a miss instead of waiting for it: the fetch writes them to an
// unlinked temporary file while it hashes and stores them, and each
// request reads that file at its own pace, following it as it grows. The
// last byte is held back until the archive is verified and stored, so a
// checksum mismatch (or any failure) cuts every response short: a client
// never receives a whole wrong archive. Memory stays flat however many
// requests follow one download.
type download struct {
	dir string // where the temporary file goes ("": the system's)

	mu   sync.Mutex
	cond *sync.Cond
	refs int // requests following it; at 0 the file is closed

	file    *os.File
	sized   bool   // file has room for the whole archive
	sum     string // the checksum the fetch verifies against
	size    int64  // announced by upstream, -1 unknown
	n       int64  // bytes readers may take (the most any attempt wrote)
	w       int64  // where the current attempt writes
	scratch []byte
	started chan struct{}
	begun   bool // started is closed
	// streamed: readers may have seen bytes, so a retry (which starts
	// over) must send the same ones to be followed.
	streamed bool
	done     bool
	err      error // when done: nil means verified and stored
	closed   bool
}

// errRetried: the fetch started over after readers had received bytes of
// a failed attempt, and the new attempt sent other bytes (or another
// length); readers cannot follow it.
var errRetried = errors.New("the download started over with other bytes after a failed attempt")

func newDownload(dir string) *download {
	d := &download{dir: dir, size: -1, started: make(chan struct{})}
	d.cond = sync.NewCond(&d.mu)
	return d
}

// beginLocked closes started: bytes are coming, or none will (done);
// waiters then decide whether to stream.
func (d *download) beginLocked() {
	if !d.begun {
		d.begun = true
		close(d.started)
	}
}

// begin lets requests follow the download.
func (d *download) begin() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.done && !d.closed {
		d.beginLocked()
	}
}

// attempt makes one fetch attempt's body be written to the file as it is
// read; it returns the body to read instead.
func (d *download) attempt(body io.Reader, size int64, sum string) io.Reader {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.done || d.closed:
		return body
	case d.streamed && size != d.size:
		d.failLocked(errRetried)
		return body
	case !d.sized:
		if err := d.createLocked(); err != nil {
			d.failLocked(err)
			return body
		}
		// Room for the whole archive up front: a disk that has it for the
		// store but not twice fails here, before requests follow.
		if err := spool.Preallocate(d.file, size); err != nil {
			d.failLocked(fmt.Errorf("stream a download: %w", err))
			return body
		}
		d.sized = true
	}
	d.size, d.sum = size, sum
	d.w = 0 // a retry starts over; what readers have is compared, not rewritten
	return &teeBody{d: d, r: body}
}

// prepare creates the file while the fetch asks upstream, so that the
// first byte does not wait for it too: creating a file can take as long
// as upstream takes to answer.
func (d *download) prepare() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.done && !d.closed {
		d.createLocked() // a failure is met again, and reported, by attempt
	}
}

// createLocked creates the file unless it is there.
func (d *download) createLocked() error {
	if d.file != nil {
		return nil
	}
	f, err := spool.CreateTemp(d.dir, "moonbit-registry-stream-*")
	if err != nil {
		return fmt.Errorf("stream a download: %w", err)
	}
	os.Remove(f.Name()) // unlinked: nothing is left behind, even by a crash
	d.file = f
	return nil
}

// teeBody writes what the fetch reads to the download's file. Requests
// start to follow only once the store has taken the first chunk (the copy
// into the store reads again only after its write succeeded): a store
// that cannot write at all (a full disk) is still answered with a status,
// not a cut transfer.
type teeBody struct {
	d     *download
	r     io.Reader
	reads int
}

func (t *teeBody) Read(p []byte) (int, error) {
	if t.reads++; t.reads == 2 {
		t.d.begin()
	}
	n, err := t.r.Read(p)
	if n > 0 {
		t.d.write(p[:n])
	}
	return n, err
}

func (d *download) write(p []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done || d.closed || d.file == nil {
		return
	}
	// A retry sends again what an earlier attempt sent: it must be the
	// same bytes, since readers may have them.
	if d.w < d.n {
		k := min(int64(len(p)), d.n-d.w)
		if int64(cap(d.scratch)) < k {
			d.scratch = make([]byte, k)
		}
		had := d.scratch[:k]
		if _, err := d.file.ReadAt(had, d.w); err != nil || !bytes.Equal(had, p[:k]) {
			d.failLocked(errRetried)
			return
		}
		d.w += k
		p = p[k:]
	}
	if len(p) == 0 {
		return
	}
	if _, err := d.file.WriteAt(p, d.w); err != nil {
		d.failLocked(fmt.Errorf("stream a download: %w", err))
		return
	}
	d.w += int64(len(p))
	d.n = d.w
	d.streamed = true
	d.cond.Broadcast()
}

// finish ends the download with the fetch's outcome: readers get the last
// byte and EOF after nil, the error otherwise. The last byte thus waits
// until the archive is verified and durable: a client that has it whole
// finds it stored, also if upstream goes away right after.
func (d *download) finish(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done {
		return
	}
	switch {
	case err == nil && !d.streamed:
		err = errNotStreamed
	case err == nil && d.w != d.n:
		// The attempt that succeeded was shorter than one before it:
		// readers must not get the earlier attempt's tail.
		err = errRetried
	}
	d.failLocked(err)
}

// errNotStreamed: the fetch finished without this download seeing its
// bytes (another process fetched it, or it was stored meanwhile); the
// archive is read from the store instead.
var errNotStreamed = errors.New("the archive was not streamed")

func (d *download) failLocked(err error) {
	d.done, d.err = true, err
	d.beginLocked()
	d.cond.Broadcast()
}

// streamable reports whether readers can follow the download: it has
// begun, and has not failed.
func (d *download) streamable() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sized && !(d.done && d.err != nil)
}

// Stream is an archive being fetched, read as it arrives (see download).
// Read blocks until more bytes are there; it ends with io.EOF once the
// archive is verified and stored, or with the fetch's error. Close it.
type Stream struct {
	d    *download
	c    *Cache
	mv   module.Version
	ctx  context.Context // the request's: a reader that left stops waiting
	stop func() bool     // ends the wake-up on ctx's end
	off  int64
	// Size is the archive's length as upstream announced it; -1 unknown.
	Size int64
	// SHA256 is the index checksum the archive is verified against.
	SHA256 string
	closed bool
}

// Read implements io.Reader. A failure to read the download's file ends
// the stream as a failed download does (ErrStreamCut).
func (s *Stream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	f, limit, err := s.wait()
	if err != nil {
		return 0, err
	}
	n, err := f.ReadAt(p[:min(int64(len(p)), limit-s.off)], s.off)
	s.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	if err != nil {
		err = fmt.Errorf("archive %s: %w: %w", s.mv, ErrStreamCut, err)
	}
	return n, err
}

// WriteTo implements io.WriterTo: it sends the stream to w as it
// arrives, and flushes w (when it has Flush) after each stretch, so that
// nothing waits in a buffer for more to come. When w takes a file (an
// http.ResponseWriter over plain HTTP does, with sendfile), each stretch
// goes from the page cache to the socket without being copied through
// this process, from a descriptor of the reader's own (its offset is the
// reader's); otherwise it is copied through Read. An error of the
// download (the response must then be cut, not ended) wraps
// ErrStreamCut; any other is w's or the request's.
func (s *Stream) WriteTo(w io.Writer) (int64, error) {
	flush := func() {}
	if f, ok := w.(interface{ Flush() }); ok {
		flush = f.Flush
	}
	rf, ok := w.(io.ReaderFrom)
	own := s.ownFile(ok)
	if own == nil {
		return s.copyTo(w, flush)
	}
	defer own.Close()
	var total int64
	for {
		_, limit, err := s.wait()
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		// own's offset moves with what is read from it: it stays at s.off.
		n, err := rf.ReadFrom(io.LimitReader(own, limit-s.off))
		s.off += n
		total += n
		if err != nil {
			return total, err
		}
		flush()
	}
}

// ownFile is the download's file opened again for this reader and set at
// its offset, when want and the system can; nil otherwise.
func (s *Stream) ownFile(want bool) *os.File {
	if !want {
		return nil
	}
	s.d.mu.Lock()
	f := s.d.file // open as long as this reader follows
	s.d.mu.Unlock()
	own := spool.Reopen(f)
	if own == nil {
		return nil
	}
	if _, err := own.Seek(s.off, io.SeekStart); err != nil {
		own.Close()
		return nil
	}
	return own
}

// copyTo is WriteTo through Read and a buffer of its own.
func (s *Stream) copyTo(w io.Writer, flush func()) (int64, error) {
	buf := make([]byte, streamBuffer)
	var total int64
	for {
		n, err := s.Read(buf)
		if n > 0 {
			k, werr := w.Write(buf[:n])
			total += int64(k)
			if werr != nil {
				return total, werr
			}
			flush()
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// streamBuffer is what one copy of WriteTo moves at most when it cannot
// send the file itself.
const streamBuffer = 64 << 10

// wait blocks until bytes past the reader's offset may be read, and
// returns the file and how far; io.EOF once the reader has everything and
// the archive is verified and stored, the fetch's error if it failed, or
// the request's if it left.
func (s *Stream) wait() (*os.File, int64, error) {
	d := s.d
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		if d.done && d.err != nil {
			return nil, 0, fmt.Errorf("archive %s: %w: %w", s.mv, ErrStreamCut, d.err)
		}
		limit := d.n
		if !d.done {
			limit-- // the last byte waits for the verdict
		}
		if s.off < limit {
			return d.file, limit, nil
		}
		if d.done {
			return nil, 0, io.EOF
		}
		if err := s.ctx.Err(); err != nil {
			return nil, 0, err
		}
		d.cond.Wait()
	}
}

// Close stops following the download.
func (s *Stream) Close() error {
	if !s.closed {
		s.closed = true
		s.stop()
		s.c.leave(s.mv, s.d)
	}
	return nil
}

// join returns mv's download, creating it, and counts the caller as one
// of its followers; every join is matched by one leave.
func (c *Cache) join(mv module.Version) *download {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	d := c.downloads[mv]
	if d == nil {
		d = newDownload(c.spoolDir)
		c.downloads[mv] = d
	}
	d.mu.Lock()
	d.refs++
	d.mu.Unlock()
	return d
}

// leave undoes a join; the last follower to leave closes the file.
func (c *Cache) leave(mv module.Version, d *download) {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.refs--
	if d.refs > 0 {
		return
	}
	if c.downloads[mv] == d {
		delete(c.downloads, mv)
	}
	d.closed = true
	if d.file != nil {
		d.file.Close()
	}
	d.cond.Broadcast()
}

// retire takes a finished download out of reach of new requests: they
// read the store, or follow the next fetch.
func (c *Cache) retire(mv module.Version, d *download) {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	if c.downloads[mv] == d {
		delete(c.downloads, mv)
	}
}

// following is mv's download if a request follows it (nil otherwise):
// what a fetch attempt writes its bytes to.
func (c *Cache) following(mv module.Version) *download {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	return c.downloads[mv]
}

// follow makes a miss a Stream when this process fetches it: it joins
// the archive's download, starts (or joins) the fetch, and waits until
// bytes come (followed) or the fetch is over. When the fetch ended
// without streaming, followed is false and err is the fetch's.
func (c *Cache) follow(ctx context.Context, mv module.Version) (s *Stream, followed bool, err error) {
	d := c.join(mv)
	fetched := make(chan error, 1)
	go func() { fetched <- c.fetch(ctx, mv) }()
	d.prepare()
	select {
	case <-d.started:
		if d.streamable() {
			d.mu.Lock()
			size, sum := d.size, d.sum
			d.mu.Unlock()
			stop := context.AfterFunc(ctx, func() {
				d.mu.Lock()
				d.cond.Broadcast()
				d.mu.Unlock()
			})
			return &Stream{d: d, c: c, mv: mv, ctx: ctx, stop: stop, Size: size, SHA256: sum}, true, nil
		}
		select {
		case err = <-fetched:
		case <-ctx.Done():
			err = ctx.Err()
		}
	case err = <-fetched:
	case <-ctx.Done():
		err = ctx.Err()
	}
	c.leave(mv, d)
	return nil, false, err
}
