package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"

	"github.com/rs/zerolog"

	"moonbit-registry/config"
	"moonbit-registry/internal/human"
	"moonbit-registry/proxy"
	"moonbit-registry/store"
	"moonbit-registry/store/disk"
	"moonbit-registry/upstream"
)

// openPassthrough builds the handler for symbols, assets and API calls over
// the on-disk response cache.
func openPassthrough(cfg config.Config, archives *disk.Store, cat proxy.Catalog, health *upstream.Health, log zerolog.Logger) (http.Handler, error) {
	// archives is nil with a remote store: then nothing has a size limit.
	log = log.With().Str("component", "passthrough").Logger()
	var next http.RoundTripper // nil: the network
	if cfg.Server.Offline {
		next = upstream.OfflineTransport{}
	} else {
		next = health.Transport(upstream.Authorize(next, cfg.Upstream.Authorization, upstreamHosts(cfg)...))
	}
	responses, err := disk.NewResponseCache(cfg.Cache.HTTPDir, cfg.Server.Offline, log)
	if err != nil {
		return nil, err
	}
	if archives != nil {
		responses.ShareLimit(archives.ShareLimit) // cache.max_size covers API answers too
	}
	// Bodies that can be large (symbols.zip, assets) stream through files
	// of their own; without them (a filesystem without extended
	// attributes) they are passed on, not kept.
	var bodies store.Bodies // nil: nothing kept (never a nil *disk.Bodies in it)
	if b, err := openBodies(cfg, archives, log); err != nil {
		log.Warn().Err(err).Msg("symbols.zip and assets are passed through without being kept")
	} else {
		bodies = b
	}
	return newPassthrough(cfg, bodies, next, upstream.NewCachingTransport(responses, next), cat, log)
}

// openBodies opens the store of pass-through bodies (symbols.zip, assets).
func openBodies(cfg config.Config, archives *disk.Store, log zerolog.Logger) (*disk.Bodies, error) {
	bodies, err := disk.NewBodies(filepath.Join(cfg.Cache.HTTPDir, "bodies"), cfg.Server.Offline, log)
	if err != nil {
		return nil, err
	}
	if archives != nil {
		// cache.max_size covers kept bodies too; they are evicted first.
		bodies.ShareLimit(archives.ShareLimit)
	}
	return bodies, nil
}

func newPassthrough(cfg config.Config, bodies store.Bodies, direct, api http.RoundTripper, cat proxy.Catalog, log zerolog.Logger) (http.Handler, error) {
	notFoundTTL := cfg.Cache.NotFoundTTL.D()
	if notFoundTTL == 0 {
		notFoundTTL = -1 // the config's 0 is "never"; the option's is "default"
	}
	return proxy.NewPassthrough(proxy.PassthroughOptions{
		DownloadURL:  cfg.Upstream.DownloadURL,
		APIURL:       cfg.Upstream.APIURL,
		Bodies:       bodies,
		Direct:       direct,
		MaxBodyBytes: int64(cfg.Cache.MaxPassthroughSize),
		Transport:    api,
		UserAgent:    cfg.Upstream.UserAgent,
		Timeout:      cfg.Upstream.Timeout.D(),
		NotFoundTTL:  notFoundTTL,
		Catalog:      cat,
		LocalOwners:  cfg.OwnersElsewhere(),
		Logger:       log,
	})
}

// mirrorSymbols brings symbols.zip into the pass-through's store through
// the same handler that serves it, so that moon update works offline.
func (r *Registry) mirrorSymbols(ctx context.Context, out io.Writer) error {
	fail := func(err error) error {
		fmt.Fprintf(out, "failed: symbols.zip: %v\n", err)
		return err
	}
	log := r.Log.With().Str("component", "passthrough").Logger()
	// Only the body store: the API's response cache belongs to a server
	// that may be running on the same data.
	bodies, err := openBodies(r.Config, r.Local, log)
	if err != nil {
		return fail(fmt.Errorf("cannot keep it: %w", err))
	}
	auth, hosts := r.Config.Upstream.Authorization, upstreamHosts(r.Config)
	h, err := newPassthrough(r.Config, bodies, upstream.Authorize(nil, auth, hosts...), upstream.Authorize(upstream.NewTransport(), auth, hosts...), nil, log)
	if err != nil {
		return fail(err)
	}
	w := &countingWriter{header: http.Header{}}
	if err := serveInternal(ctx, h, "/symbols.zip", w); err != nil {
		return fail(err)
	}
	if w.status != http.StatusOK {
		return fail(fmt.Errorf("upstream answered %d %s", w.status, http.StatusText(w.status)))
	}
	fmt.Fprintf(out, "symbols.zip: %s, kept for offline use\n", human.Bytes(w.n))
	return nil
}

// serveInternal runs one GET through h without a network connection. A
// handler that breaks the transfer off (a body cut short upstream) is an
// error here.
func serveInternal(ctx context.Context, h http.Handler, path string, w http.ResponseWriter) (err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://registry.internal"+path, nil)
	if err != nil {
		return err
	}
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				panic(v)
			}
			err = errors.New("the transfer from upstream was cut short")
		}
	}()
	h.ServeHTTP(w, req)
	return nil
}

// countingWriter is a ResponseWriter that keeps the status and headers and
// counts the body bytes it discards.
type countingWriter struct {
	header http.Header
	status int
	n      int64
}

func (w *countingWriter) Header() http.Header { return w.header }

func (w *countingWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.n += int64(len(p))
	return len(p), nil
}

// upstreamHosts are the hosts upstream's credentials go to.
func upstreamHosts(cfg config.Config) []string {
	var hosts []string
	for _, s := range []string{cfg.Upstream.DownloadURL, cfg.Upstream.APIURL} {
		if u, err := url.Parse(s); err == nil {
			hosts = append(hosts, u.Host)
		}
	}
	return hosts
}
