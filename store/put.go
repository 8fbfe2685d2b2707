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
	h := sha256.New()
	n, err = io.CopyBuffer(io.MultiWriter(w, h), ctxReader{ctx: ctx, r: r}, make([]byte, bufferFor(meta.Size)))
	sum := h.Sum(nil)
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
