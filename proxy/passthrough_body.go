package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"moonbit-registry/cache"
	"moonbit-registry/store"
	"moonbit-registry/upstream"
)

// keptHeaders are the response headers stored with a body and replayed
// with it; everything else describes one exchange, not the content.
var keptHeaders = []string{
	"Content-Type", "Content-Encoding", "Content-Disposition", "Content-Language",
	"ETag", "Last-Modified", "Cache-Control", "Expires", "Date",
}

// serveBody answers /symbols.zip, /assets/ and other download paths
// (bodies that can be large)
// without ever holding a body in memory: a fresh stored copy is served from
// disk; otherwise upstream is asked (conditionally when there is a copy),
// and a new body streams to the client and into the store at once, kept
// only when it arrived whole and within the size cap. When upstream cannot
// answer, the stored copy is served however old.
func (p *passthrough) serveBody(w http.ResponseWriter, r *http.Request, target string) {
	stored, meta := p.openBody(target)
	if stored != nil {
		defer stored.Close()
		if fresh(meta, time.Now()) {
			noteCache(r, string(cache.OutcomeHit))
			p.sendStored(w, r, stored, meta)
			return
		}
	}

	ctx, cancel := context.WithTimeout(r.Context(), p.timeout)
	defer cancel()
	req, err := p.upstreamRequest(ctx, r, target)
	if err != nil {
		http.Error(w, "invalid path", http.StatusBadRequest)
		return
	}
	if stored != nil { // ask whether the copy is still current
		if etag := http.Header(meta.Header).Get("ETag"); etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		if lm := http.Header(meta.Header).Get("Last-Modified"); lm != "" {
			req.Header.Set("If-Modified-Since", lm)
		}
	}
	done, err := p.notFound.ask(ctx, target)
	if err != nil {
		p.answerAskFailed(w, r, err)
		return
	}
	resp, err := p.direct.Do(req)
	done(upstreamStatus(resp, err))
	if err == nil && resp.StatusCode >= 500 && stored != nil {
		// Upstream trouble with a copy at hand: serve the copy.
		resp.Body.Close()
		err = errors.New("upstream answered " + resp.Status)
	}
	if err != nil {
		if stored != nil && r.Context().Err() == nil {
			p.log.Warn().Err(err).Str("upstream", target).Msg("pass-through: upstream failed, serving the stored copy")
			noteCache(r, string(cache.OutcomeStale))
			p.sendStored(w, r, stored, meta)
			return
		}
		p.failUpstream(w, r, target, err)
		return
	}
	defer resp.Body.Close()

	if resp.StatusCode == http.StatusNotModified && stored != nil {
		keepHeaders(http.Header(meta.Header), resp.Header)
		meta.Stored = time.Now()
		if err := p.bodies.Revalidated(target, meta); err != nil {
			p.log.Debug().Err(err).Str("upstream", target).Msg("pass-through: cannot record a revalidation")
		}
		noteCache(r, string(cache.OutcomeHit))
		p.sendStored(w, r, stored, meta)
		return
	}
	noteCache(r, string(cache.OutcomeMiss))
	p.streamBody(w, r, target, resp)
}

// openBody is the stored copy for target, or nil.
func (p *passthrough) openBody(target string) (io.ReadSeekCloser, store.BodyMeta) {
	if p.bodies == nil {
		return nil, store.BodyMeta{}
	}
	f, meta, err := p.bodies.Open(target)
	if err != nil {
		return nil, store.BodyMeta{}
	}
	if meta.Header == nil {
		meta.Header = map[string][]string{}
	}
	return f, meta
}

// sendStored answers from a stored body: Range, HEAD and the client's
// If-None-Match (against the stored ETag) by http.ServeContent, the body
// with sendfile.
func (p *passthrough) sendStored(w http.ResponseWriter, r *http.Request, f io.ReadSeeker, meta store.BodyMeta) {
	keepHeaders(w.Header(), http.Header(meta.Header))
	// Zero modtime: Last-Modified is upstream's, stored with the rest.
	http.ServeContent(w, r, "", time.Time{}, f)
}

// streamBody passes a new upstream answer on while storing it. A body cut
// short is never stored, and the client's connection is broken off rather
// than the answer ending as if complete.
func (p *passthrough) streamBody(w http.ResponseWriter, r *http.Request, target string, resp *http.Response) {
	hdr := w.Header()
	copyEndToEndHeaders(hdr, resp.Header)
	if resp.ContentLength >= 0 {
		hdr.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	var keep store.BodyWriter
	if p.bodies != nil && storable(resp) && resp.ContentLength <= p.maxBody {
		var err error
		if keep, err = p.bodies.Create(); err != nil {
			p.log.Warn().Err(err).Str("upstream", target).Msg("pass-through: cannot store the body")
			keep = nil
		}
	}
	defer func() {
		if keep != nil {
			keep.Abort() // unless committed below
		}
	}()

	toClient := io.Writer(w)
	status := clientStatus(resp.StatusCode)
	if r.Method == http.MethodHead {
		toClient = io.Discard
	} else if status == http.StatusOK && etagMatches(r.Header.Get("If-None-Match"), resp.Header.Get("ETag")) {
		status, toClient = http.StatusNotModified, io.Discard
		for _, k := range []string{"Content-Type", "Content-Length", "Content-Encoding"} {
			hdr.Del(k)
		}
	}
	if keep == nil && toClient == io.Discard {
		w.WriteHeader(status)
		return
	}
	w.WriteHeader(status)

	buf := make([]byte, 32<<10)
	var n int64
	for {
		m, rerr := resp.Body.Read(buf)
		if m > 0 {
			n += int64(m)
			if keep != nil && n > p.maxBody {
				p.log.Warn().Str("upstream", target).Int64("max_bytes", p.maxBody).Msg("pass-through body over the size cap: passed on, not stored")
				keep.Abort()
				keep = nil
			}
			if keep != nil {
				if _, err := keep.Write(buf[:m]); err != nil {
					p.log.Warn().Err(err).Str("upstream", target).Msg("pass-through: storing the body failed; passed on, not stored")
					keep.Abort()
					keep = nil
				}
			}
			if _, err := toClient.Write(buf[:m]); err != nil {
				return // the client left; what was read is not stored
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			p.log.Warn().Err(rerr).Str("upstream", target).Int64("bytes", n).Msg("pass-through body cut short: not stored")
			if toClient != io.Discard {
				// The client must see a broken transfer, not a short
				// complete one.
				panic(http.ErrAbortHandler)
			}
			return
		}
	}
	if keep == nil || (resp.ContentLength >= 0 && n != resp.ContentLength) {
		return
	}
	meta := store.BodyMeta{Header: map[string][]string{}, Stored: time.Now()}
	keepHeaders(http.Header(meta.Header), resp.Header)
	if err := keep.Commit(target, meta); err != nil {
		p.log.Warn().Err(err).Str("upstream", target).Msg("pass-through: storing the body failed")
	}
	keep = nil
}

// keepHeaders copies the keptHeaders src has into dst.
func keepHeaders(dst, src http.Header) {
	for _, k := range keptHeaders {
		if v := src.Values(k); len(v) > 0 {
			dst[http.CanonicalHeaderKey(k)] = append([]string(nil), v...)
		}
	}
}

// storable: a complete 200 that upstream allows a shared cache to keep.
func storable(resp *http.Response) bool {
	if resp.StatusCode != http.StatusOK {
		return false
	}
	cc := strings.ToLower(resp.Header.Get("Cache-Control"))
	return !upstream.HasDirective(cc, "no-store") && !upstream.HasDirective(cc, "private")
}

// fresh reports whether a stored body may be served without asking
// upstream (RFC 9111 section 4.2, without heuristics): within s-maxage or
// max-age of when it was stored or revalidated, or before Expires; never
// with no-cache.
func fresh(meta store.BodyMeta, now time.Time) bool {
	h := http.Header(meta.Header)
	cc := strings.ToLower(strings.Join(h.Values("Cache-Control"), ","))
	if upstream.HasDirective(cc, "no-cache") || upstream.HasDirective(cc, "no-store") {
		return false
	}
	for _, d := range []string{"s-maxage", "max-age"} {
		if v, ok := upstream.Directive(cc, d); ok {
			secs, err := strconv.ParseInt(v, 10, 64)
			return err == nil && now.Sub(meta.Stored) < time.Duration(secs)*time.Second
		}
	}
	if exp, err := http.ParseTime(h.Get("Expires")); err == nil {
		return now.Before(exp)
	}
	return false
}
