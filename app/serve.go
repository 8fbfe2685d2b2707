package app

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/rs/zerolog"

	"moonbit-registry/catalog"
	"moonbit-registry/config"
	"moonbit-registry/indexsync"
	"moonbit-registry/proxy"
	"moonbit-registry/store"
)

// Serve runs the proxy on server.listen until ctx ends (see ServeOn).
func Serve(ctx context.Context, cfg config.Config, log, access zerolog.Logger) error {
	// A missing or mismatched key pair stops start-up, not the first
	// client's handshake.
	if _, err := cfg.Server.LoadTLS(); err != nil {
		return UsageError{err}
	}
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Server.Listen, err)
	}
	return ServeOn(ctx, cfg, ln, nil, log, access)
}

// ServeOn runs the proxy on ln until ctx ends: it syncs the index at start
// and every index.sync_interval (unless offline) and serves clients,
// logging one line per request to access. archives, when not nil, is the
// archive store instead of the configured one (in-process tests). It
// returns after in-flight requests have finished and any sync it started
// is over; it closes ln.
func ServeOn(ctx context.Context, cfg config.Config, ln net.Listener, archives store.Store, log, access zerolog.Logger) error {
	tlsConfig, err := cfg.Server.LoadTLS()
	if err != nil {
		ln.Close()
		return UsageError{err}
	}
	metrics := proxy.NewMetrics()
	offline := cfg.Server.Offline
	r, err := Open(cfg, Use{Fetch: !offline, Evict: !offline, ReadOnly: offline, Serve: true, OnFetch: metrics.ObserveFetch, OnStoreRequest: metrics.ObserveStore, Store: archives}, log)
	if err != nil {
		ln.Close()
		return err
	}
	// Close waits for any sync Run started, so no git outlives the process.
	defer r.Close()
	metrics.WatchCache(r.Archives.Stats)
	metrics.WatchIndex(func() proxy.IndexHealth { return indexHealth(r.Index.Status()) })
	if r.Leases != nil {
		st := r.Leases.Stats()
		metrics.WatchFleet(func() proxy.FleetStats {
			return proxy.FleetStats{Acquired: st.Acquired.Load(), Waited: st.Waited.Load(), TakenOver: st.TakenOver.Load(), Outcomes: st.Outcomes.Load()}
		})
	}
	cat := catalog.New(r.Index)
	passthrough, err := openPassthrough(cfg, r.Local, cat, r.Health, log)
	if err != nil {
		ln.Close()
		return err
	}
	pages, err := newWeb(ctx, r, cat, time.Now())
	if err != nil {
		ln.Close()
		return err
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	if cfg.Server.Offline {
		log.Warn().Msg("offline: the index is served as it is and upstream is never contacted")
	} else {
		go r.Index.Run(ctx)
	}
	tokens, users := cfg.Server.Credentials()
	var publisher proxy.Publisher // nil: no private modules
	if r.Private != nil {
		publisher = r.Private
	}
	srv := proxy.New(proxy.Options{
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout.D(),
		ReadTimeout:       cfg.Server.ReadTimeout.D(),
		WriteTimeout:      cfg.Server.WriteTimeout.D(),
		IdleTimeout:       cfg.Server.IdleTimeout.D(),
		ShutdownTimeout:   cfg.Server.ShutdownTimeout.D(),
		DrainDelay:        cfg.Server.DrainDelay.D(),
		Index:             r.Index,
		FirstSyncWait:     cfg.Server.FirstSyncWait.D(),
		Archives:          r.Archives,
		RedirectArchives:  cfg.Store.Backend == config.BackendS3 && cfg.Store.S3.Redirect,
		Passthrough:       passthrough,
		Web:               pages,
		Metrics:           metrics,
		AccessLog:         &access,
		Auth:              proxy.Auth{TokenDigests: tokens, Users: users},
		Publisher:         publisher,
		PublishTokens:     cfg.Server.PublishDigests(),
		Logger:            log,
	})
	if cfg.Server.BaseURLUnreachable() {
		log.Warn().Str("base_url", cfg.Server.BaseURL).Msg("server.base_url names no host clients can reach (listening on every address): set server.base_url (or --base-url) to the URL clients use; the web page and `update` tell them this one")
	}
	if cfg.Server.AuthEnabled() && tlsConfig == nil {
		log.Warn().Msg("client credentials travel unencrypted: set server.cert_file and key_file, or put a TLS-terminating proxy in front")
	}
	log.Info().Str("base_url", cfg.Server.BaseURL).Str("root", cfg.Root).Bool("offline", cfg.Server.Offline).
		Bool("tls", tlsConfig != nil).Bool("auth", cfg.Server.AuthEnabled()).
		Msg("starting; point clients at it with MOONCAKES_REGISTRY=" + cfg.Server.BaseURL)
	return srv.Serve(ctx, ln)
}

func indexHealth(st indexsync.Status) proxy.IndexHealth {
	return proxy.IndexHealth{LastSync: st.LastSync, LastSuccess: st.LastSuccess,
		LastOK: !st.LastSync.IsZero() && st.LastError == nil, Syncs: st.Syncs, Failures: st.Failures}
}
