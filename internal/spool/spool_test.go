package spool

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestSpool(t *testing.T) {
	for _, size := range []int{0, 10, Memory, Memory + 1, 5*Memory + 7} {
		var s Spool
		want := bytes.Repeat([]byte("0123456789"), size/10+1)[:size]
		for chunk := want; len(chunk) > 0; {
			n := min(len(chunk), 4096)
			if _, err := s.Write(chunk[:n]); err != nil {
				t.Fatal(err)
			}
			chunk = chunk[n:]
		}
		if s.Len() != int64(size) || (s.file != nil) != (size > Memory) {
			t.Errorf("%d bytes: Len %d, spilled to a file: %v", size, s.Len(), s.file != nil)
		}
		r, err := s.Reader()
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%d bytes: read back %d, %v", size, len(got), err)
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}
	s := Spool{Limit: 10}
	if _, err := s.Write(make([]byte, 11)); !errors.Is(err, ErrFull) {
		t.Errorf("over the limit: %v, want ErrFull", err)
	}
}
