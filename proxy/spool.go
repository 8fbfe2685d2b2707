package proxy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
)

// spoolMemory is how much of a spool stays in memory; the rest goes to a
// temporary file, so memory stays bounded whatever a peer does.
const spoolMemory = 64 << 10

// errSpoolFull is a spool asked to hold more than its limit.
var errSpoolFull = errors.New("spool limit reached")

// spool holds bytes produced at one side's pace until the other side takes
// them at its own: up to spoolMemory in memory, then in a temporary file
// that is unlinked at once (nothing is left behind, even by a crash).
type spool struct {
	limit int64 // 0: none
	n     int64
	mem   bytes.Buffer
	file  *os.File
}

func (s *spool) Write(p []byte) (int, error) {
	if s.limit > 0 && s.n+int64(len(p)) > s.limit {
		return 0, errSpoolFull
	}
	if s.file == nil && s.mem.Len()+len(p) > spoolMemory {
		f, err := os.CreateTemp("", "moonbit-registry-spool-*")
		if err != nil {
			return 0, err
		}
		os.Remove(f.Name())
		s.file = f
	}
	var n int
	var err error
	if s.file != nil {
		n, err = s.file.Write(p)
	} else {
		n, err = s.mem.Write(p)
	}
	s.n += int64(n)
	return n, err
}

// Len is the number of bytes held.
func (s *spool) Len() int64 { return s.n }

// Reader reads everything held, from the start; call it once writing is
// done.
func (s *spool) Reader() (io.Reader, error) {
	if s.file == nil {
		return bytes.NewReader(s.mem.Bytes()), nil
	}
	if _, err := s.file.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return io.MultiReader(bytes.NewReader(s.mem.Bytes()), s.file), nil
}

// Close releases the temporary file, if any.
func (s *spool) Close() error {
	if s.file != nil {
		return s.file.Close()
	}
	return nil
}

// spooledResponse is an http.ResponseWriter that keeps the whole answer
// (status, headers, body) to be sent later, so the producer (a git
// process holding one of a few slots) never waits for a slow client.
type spooledResponse struct {
	header http.Header
	status int
	body   spool
}

func newSpooledResponse() *spooledResponse { return &spooledResponse{header: http.Header{}} }

func (s *spooledResponse) Header() http.Header { return s.header }

func (s *spooledResponse) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
}

func (s *spooledResponse) Write(p []byte) (int, error) {
	s.WriteHeader(http.StatusOK)
	return s.body.Write(p)
}

// sendTo writes the kept answer to w.
func (s *spooledResponse) sendTo(w http.ResponseWriter) error {
	for k, vs := range s.header {
		w.Header()[k] = vs
	}
	if s.status == 0 {
		s.status = http.StatusOK
	}
	w.WriteHeader(s.status)
	r, err := s.body.Reader()
	if err != nil {
		return err
	}
	_, err = io.Copy(w, r)
	return err
}
