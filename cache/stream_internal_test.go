package cache

import (
	"bytes"
	"context"
	"io"
	"testing"
)

// A retry shorter than an attempt before it (no length announced) must
// not leave readers the earlier attempt's tail as a clean end.
func TestDownloadShorterRetryIsNotServed(t *testing.T) {
	d := newDownload(t.TempDir())
	d.refs = 1
	io.Copy(io.Discard, d.attempt(bytes.NewReader(bytes.Repeat([]byte("a"), 1500)), -1, "sum"))
	io.Copy(io.Discard, d.attempt(bytes.NewReader(bytes.Repeat([]byte("a"), 1000)), -1, "sum"))
	d.finish(nil)
	s := &Stream{d: d, ctx: context.Background()}
	got, err := io.ReadAll(s)
	if err == nil {
		t.Fatalf("the reader got %d bytes and a clean end", len(got))
	}
}
