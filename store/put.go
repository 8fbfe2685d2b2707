package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"moonbit-registry/module"
)

// PutVerified streams r into s as mv's archive, hashing while it copies, and
// commits only if the bytes hash to meta.SHA256; otherwise it aborts the
// write and returns a *ChecksumError. Every archive that enters a store
// comes through here: a proxy miss, mirror, and later publish.
//
// Errors from r are returned wrapped with %w, so a caller can tell its
// reader's errors (a cut upstream body) from the store's (ErrWrite). It
// returns the number of bytes read from r.
func PutVerified(ctx context.Context, s Store, mv module.Version, r io.Reader, meta Meta) (n int64, err error) {
	if err := mv.Validate(); err != nil {
		return 0, err
	}
	if !module.ValidChecksum(meta.SHA256) {
		return 0, fmt.Errorf("put %s: expected checksum %q is not a lowercase hex SHA-256", mv, meta.SHA256)
	}
	w, err := s.Create(ctx, mv, meta)
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", mv, err)
	}
	committed := false
	defer func() {
		if !committed {
			w.Abort()
		}
	}()
	n, sum, err := copyHashing(w, ctxReader{ctx: ctx, r: r}, meta.Size)
	if err != nil {
		return n, fmt.Errorf("put %s: after %d bytes: %w", mv, n, err)
	}
	if got := hex.EncodeToString(sum); got != meta.SHA256 {
		return n, &ChecksumError{Archive: mv, Expected: meta.SHA256, Actual: got}
	}
	if meta.Size >= 0 && n != meta.Size {
		// Same hash, other length cannot happen; a wrong Meta.Size can.
		return n, fmt.Errorf("put %s: %d bytes, announced %d", mv, n, meta.Size)
	}
	if err := w.Commit(ctx); err != nil {
		return n, fmt.Errorf("put %s: %w", mv, err)
	}
	committed = true
	return n, nil
}

// copyHashing copies r to w and returns the SHA-256 of what it copied.
// A large archive is hashed on a second goroutine while the next chunk is
// read and written, over two buffers taken in turn: on a large miss the
// hash then runs beside the copy instead of after each chunk
// (docs/benchmarks.md has the figures).
// Small ones, nearly all of them, are hashed in line: a goroutine and two
// channels per archive cost more than the overlap saves.
func copyHashing(w io.Writer, r io.Reader, size int64) (n int64, sum []byte, err error) {
	h := sha256.New()
	if size >= 0 && size < hashBesideAbove {
		n, err = io.CopyBuffer(io.MultiWriter(w, h), r, make([]byte, bufferFor(size)))
		return n, h.Sum(nil), err
	}
	// free holds the buffers not being hashed; hashing, the chunks the
	// hasher has yet to take. The hasher gives each buffer back when done.
	free := make(chan []byte, 2)
	hashing := make(chan []byte, 2)
	free <- make([]byte, copyBuffer)
	free <- make([]byte, copyBuffer)
	hashed := make(chan struct{})
	go func() {
		defer close(hashed)
		for p := range hashing {
			h.Write(p)
			free <- p[:cap(p)]
		}
	}()
	for err == nil {
		buf := <-free
		k, rerr := r.Read(buf)
		if k > 0 {
			hashing <- buf[:k]
			if _, werr := w.Write(buf[:k]); werr != nil {
				err = werr
			}
			n += int64(k)
		} else {
			free <- buf
		}
		if rerr == io.EOF {
			break
		}
		if err == nil {
			err = rerr
		}
	}
	close(hashing)
	<-hashed
	return n, h.Sum(nil), err
}

// hashBesideAbove is the archive size from which copyHashing hashes on a
// goroutine of its own (also for archives of unknown size).
const hashBesideAbove = 1 << 20

// ctxReader stops a copy once ctx ends, even if the underlying reader does
// not watch ctx itself.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// copyBuffer is what one read of an archive body moves at most: large
// enough that a fast transfer is a few hundred system calls, not
// thousands.
const copyBuffer = 256 << 10

// bufferFor is the copy buffer's size for an archive of size bytes (-1:
// unknown): copyBuffer, or just enough for the whole archive and the end
// of it when it is smaller; most archives are a few KiB, and a mirror run
// allocating (and clearing) 256 KiB for each of them spent a tenth of its
// CPU on that.
func bufferFor(size int64) int {
	if size >= 0 && size < copyBuffer {
		return int(size) + 1
	}
	return copyBuffer
}
