package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// resumingBody is an archive body that survives a cut: when the
// connection breaks mid-body, it asks upstream for the rest (Range from
// the first byte not yet read, guarded by If-Range with the response's
// validator, so a changed archive is never spliced) and reads on. When
// upstream does not answer with exactly that rest, the cut is returned as
// the read error and the fetch starts over, as without resuming.
type resumingBody struct {
	f         *Fetcher
	ctx       context.Context
	url       string
	body      io.ReadCloser
	validator string // strong ETag, else Last-Modified
	total     int64  // the whole archive's length
	read      int64  // bytes handed to the reader so far
	resumes   int    // Range requests made
	retries   *int   // the fetch's retries left; each resume takes one
}

// newResumingBody wraps resp's body; it resumes only when resp says the
// archive's length, that upstream takes byte ranges (Accept-Ranges:
// bytes; asking one that does not would cost a retry for nothing) and
// carries a strong validator.
func newResumingBody(ctx context.Context, f *Fetcher, url string, resp *http.Response, retries *int) io.ReadCloser {
	validator := strongValidator(resp.Header)
	if validator == "" || resp.ContentLength <= 0 || !strings.EqualFold(strings.TrimSpace(resp.Header.Get("Accept-Ranges")), "bytes") {
		return resp.Body
	}
	return &resumingBody{f: f, ctx: ctx, url: url, body: resp.Body, validator: validator, total: resp.ContentLength, retries: retries}
}

// strongValidator is what may guard a range (RFC 9110 13.1.5): a strong
// ETag, else a Last-Modified at least a second before the response's Date
// (an archive changed within that second would share it); "" for none.
func strongValidator(h http.Header) string {
	if etag := h.Get("ETag"); etag != "" && !strings.HasPrefix(etag, "W/") {
		return etag
	}
	lm, err1 := http.ParseTime(h.Get("Last-Modified"))
	date, err2 := http.ParseTime(h.Get("Date"))
	if err1 != nil || err2 != nil || date.Sub(lm) < time.Second {
		return ""
	}
	return h.Get("Last-Modified")
}

func (b *resumingBody) Read(p []byte) (int, error) {
	for {
		n, err := b.body.Read(p)
		b.read += int64(n)
		if err == nil || errors.Is(err, io.EOF) || b.read >= b.total || b.ctx.Err() != nil || *b.retries <= 0 {
			return n, err
		}
		if rerr := b.resume(); rerr != nil {
			b.f.log.Debug().Err(rerr).Str("url", b.url).Int64("at", b.read).Msg("archive body cut; cannot resume, starting over")
			return n, err
		}
		b.f.log.Info().Err(err).Str("url", b.url).Int64("at", b.read).Int64("of", b.total).Msg("archive body cut; resumed with a range request")
		if n > 0 {
			return n, nil
		}
	}
}

// resume replaces the broken body with upstream's answer for the rest.
func (b *resumingBody) resume() error {
	if b.resumes > 0 {
		t := time.NewTimer(b.f.backoffFor(b.resumes - 1))
		select {
		case <-t.C:
		case <-b.ctx.Done():
			t.Stop()
			return b.ctx.Err()
		}
	}
	b.resumes++
	*b.retries--
	b.body.Close()
	b.body = http.NoBody
	req, err := http.NewRequestWithContext(b.ctx, http.MethodGet, b.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", b.f.userAgent)
	if b.f.auth != "" {
		req.Header.Set("Authorization", b.f.auth)
	}
	req.Header.Set("Range", "bytes="+strconv.FormatInt(b.read, 10)+"-")
	req.Header.Set("If-Range", b.validator)
	b.f.requests.Add(1)
	resp, err := b.f.client.Do(req)
	if err != nil {
		return err
	}
	want := fmt.Sprintf("bytes %d-%d/%d", b.read, b.total-1, b.total)
	if resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Range") != want {
		drain(resp.Body)
		resp.Body.Close()
		return fmt.Errorf("upstream answered %s, Content-Range %q to a request for the rest (%s)", resp.Status, resp.Header.Get("Content-Range"), want)
	}
	b.body = resp.Body
	return nil
}

func (b *resumingBody) Close() error { return b.body.Close() }
