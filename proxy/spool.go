package proxy

import (
	"io"
	"net/http"

	"moonbit-registry/internal/spool"
)

// spooledResponse is an http.ResponseWriter that keeps the whole answer
// (status, headers, body) to be sent later, so the producer (a git
// process holding one of a few slots) never waits for a slow client.
type spooledResponse struct {
	header http.Header
	status int
	body   spool.Spool
	err    error // the first failure to keep the body (no temporary file)
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
	n, err := s.body.Write(p)
	if err != nil && s.err == nil {
		s.err = err
	}
	return n, err
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
