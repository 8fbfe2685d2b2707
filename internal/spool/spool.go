// Package spool holds bytes produced at one side's pace until the other
// side takes them at its own: in memory up to a bound, then in a temporary
// file that is unlinked at once, so memory stays bounded whatever a peer
// does and nothing is left behind, even by a crash. Preallocate reserves a
// file's room up front, for the files that hold archives on their way;
// OpenFile and CreateTemp open such files (and the store's) without the
// runtime's poller registration, which regular files never use.
package spool

import (
	"bytes"
	"errors"
	"io"
	"os"
)

// Memory is how much of a spool stays in memory; the rest goes to a
// temporary file.
const Memory = 64 << 10

// ErrFull is a spool asked to hold more than its limit.
var ErrFull = errors.New("spool limit reached")

// Spool is an io.Writer whose bytes can be read back from the start. The
// zero value is ready to use, without a limit.
type Spool struct {
	Limit int64 // refuse to hold more than this; 0: no limit
	n     int64
	mem   bytes.Buffer
	file  *os.File
}

func (s *Spool) Write(p []byte) (int, error) {
	if s.Limit > 0 && s.n+int64(len(p)) > s.Limit {
		return 0, ErrFull
	}
	if s.file == nil && s.mem.Len()+len(p) > Memory {
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
func (s *Spool) Len() int64 { return s.n }

// Reader reads everything held, from the start; call it once writing is
// done.
func (s *Spool) Reader() (io.Reader, error) {
	if s.file == nil {
		return bytes.NewReader(s.mem.Bytes()), nil
	}
	if _, err := s.file.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return io.MultiReader(bytes.NewReader(s.mem.Bytes()), s.file), nil
}

// Close releases the temporary file, if any.
func (s *Spool) Close() error {
	if s.file != nil {
		return s.file.Close()
	}
	return nil
}
