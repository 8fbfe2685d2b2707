package store

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// TestCopyHashing: in line or beside the copy, what is written and the
// sum are the input's, and a reader's or writer's error ends the copy.
func TestCopyHashing(t *testing.T) {
	errRead, errWrite := errors.New("read failed"), errors.New("write failed")
	for _, tc := range []struct {
		name     string
		size     int   // bytes in the input
		announce int64 // -1: not known
		readErr  bool  // the reader fails after the input
		writeErr bool  // the writer fails after half the input
	}{
		{name: "empty", size: 0, announce: 0},
		{name: "small", size: 1000, announce: 1000},
		{name: "small unknown size", size: 1000, announce: -1},
		{name: "just below beside", size: hashBesideAbove - 1, announce: hashBesideAbove - 1},
		{name: "beside", size: hashBesideAbove, announce: hashBesideAbove},
		{name: "large", size: 3*copyBuffer*4 + 17, announce: 3*copyBuffer*4 + 17},
		{name: "large unknown size", size: 3*copyBuffer*4 + 17, announce: -1},
		{name: "read error in line", size: 1000, announce: 2000, readErr: true},
		{name: "read error beside", size: 3 << 20, announce: -1, readErr: true},
		{name: "write error in line", size: 1000, announce: 1000, writeErr: true},
		{name: "write error beside", size: 3 << 20, announce: -1, writeErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := make([]byte, tc.size)
			for i := range in {
				in[i] = byte(i*31 + i>>11)
			}
			var r io.Reader = iotest.HalfReader(bytes.NewReader(in))
			if tc.readErr {
				r = io.MultiReader(r, iotest.ErrReader(errRead))
			}
			var out bytes.Buffer
			var w io.Writer = &out
			if tc.writeErr {
				w = &failingWriter{w: &out, left: tc.size / 2, err: errWrite}
			}
			n, sum, err := copyHashing(w, r, tc.announce)
			switch {
			case tc.readErr:
				if !errors.Is(err, errRead) {
					t.Fatalf("err = %v, want the reader's", err)
				}
			case tc.writeErr:
				if !errors.Is(err, errWrite) {
					t.Fatalf("err = %v, want the writer's", err)
				}
			default:
				want := sha256.Sum256(in)
				if err != nil || n != int64(tc.size) || !bytes.Equal(sum, want[:]) || !bytes.Equal(out.Bytes(), in) {
					t.Fatalf("copied %d of %d bytes (%d written), sum matches %v, err %v",
						n, tc.size, out.Len(), bytes.Equal(sum, want[:]), err)
				}
			}
		})
	}
}

// failingWriter takes left bytes, then fails with err.
type failingWriter struct {
	w    io.Writer
	left int
	err  error
}

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.left {
		n, _ := f.w.Write(p[:f.left])
		f.left = 0
		return n, f.err
	}
	f.left -= len(p)
	return f.w.Write(p)
}
