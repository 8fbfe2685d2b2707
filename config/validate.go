package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"moonbit-registry/module"
)

// ErrInvalid marks every validation error, for errors.Is.
var ErrInvalid = errors.New("invalid configuration")

// validate checks every key; the first bad one is reported with its source.
// It also fills in base_url from listen when it is empty (https:// with TLS).
func (c *Config) validate(src sources) error {
	bad := func(key string, value any, why string) error {
		return fmt.Errorf("%w: %s = %q: %s (%s)", ErrInvalid, key, fmt.Sprint(value), why, src.of(key))
	}
	if err := checkListen(c.Server.Listen); err != nil {
		return bad("server.listen", c.Server.Listen, err.Error())
	}
	if err := c.validateAuth(src); err != nil {
		return err
	}
	if c.Server.BaseURL == "" {
		scheme := "http://"
		if c.Server.TLSEnabled() {
			scheme = "https://"
		}
		c.Server.BaseURL = scheme + c.Server.Listen
		src["server.base_url"] = "derived from server.listen"
	} else {
		// The client appends "/git/index" without stripping a slash.
		u, err := module.ParseBaseURL(c.Server.BaseURL)
		if err != nil {
			return bad("server.base_url", c.Server.BaseURL, err.Error())
		}
		c.Server.BaseURL = u.String()
	}
	for _, u := range []struct {
		key string
		val *string
	}{
		{"upstream.index_url", &c.Upstream.IndexURL},
		{"upstream.download_url", &c.Upstream.DownloadURL},
		{"upstream.api_url", &c.Upstream.APIURL},
	} {
		parsed, err := module.ParseBaseURL(*u.val)
		if err != nil {
			return bad(u.key, *u.val, err.Error())
		}
		*u.val = parsed.String()
	}
	if strings.TrimSpace(c.Upstream.UserAgent) == "" {
		return bad("upstream.user_agent", c.Upstream.UserAgent, "must not be empty: upstream rejects requests without a user agent")
	}
	for _, d := range []struct {
		key string
		val Duration
		min time.Duration
	}{
		{"upstream.timeout", c.Upstream.Timeout, time.Second},
		{"index.sync_interval", c.Index.SyncInterval, time.Second},
		{"index.git_timeout", c.Index.GitTimeout, time.Second},
		{"server.read_header_timeout", c.Server.ReadHeaderTimeout, time.Second},
		{"server.shutdown_timeout", c.Server.ShutdownTimeout, 0},
		{"server.drain_delay", c.Server.DrainDelay, 0},
		{"server.first_sync_wait", c.Server.FirstSyncWait, 0},
		{"cache.not_found_ttl", c.Cache.NotFoundTTL, 0},
		{"index.check_interval", c.Index.CheckInterval, 0},
		// Renewed every third of it, judged by a clock with one-second
		// steps: shorter would take live leases over.
		{"store.s3.lease_ttl", c.Store.S3.LeaseTTL, 5 * time.Second},
	} {
		if d.val.D() < d.min {
			return bad(d.key, d.val.D(), "must be at least "+d.min.String())
		}
	}
	for _, n := range []struct {
		key      string
		val      int
		min, max int
	}{
		{"upstream.retries", c.Upstream.Retries, 0, 10},
		{"cache.max_concurrent_fetches", c.Cache.MaxConcurrentFetches, 1, 1024},
		{"mirror.concurrency", c.Mirror.Concurrency, 1, 256},
	} {
		if n.val < n.min || n.val > n.max {
			return bad(n.key, n.val, fmt.Sprintf("must be between %d and %d", n.min, n.max))
		}
	}
	if err := module.ValidateBranch(c.Index.Branch); err != nil {
		return bad("index.branch", c.Index.Branch, err.Error())
	}
	for _, p := range []struct{ key, val string }{
		{"index.dir", c.Index.Dir}, {"cache.dir", c.Cache.Dir}, {"cache.http_dir", c.Cache.HTTPDir},
		{"private.dir", c.Private.Dir},
	} {
		if strings.TrimSpace(p.val) == "" || strings.ContainsRune(p.val, 0) {
			return bad(p.key, p.val, "must be a directory path")
		}
	}
	if err := c.validateStore(bad); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, o := range c.Private.Owners {
		if err := module.ValidateOwner(o); err != nil {
			return bad("private.owners", c.Private.Owners, fmt.Sprintf("%q is not a module owner name", o))
		}
		if seen[o] {
			return bad("private.owners", c.Private.Owners, fmt.Sprintf("%q appears twice", o))
		}
		seen[o] = true
	}
	if c.Private.MaxArchiveSize <= 0 {
		return bad("private.max_archive_size", c.Private.MaxArchiveSize, "must be more than 0")
	}
	for _, p := range c.Mirror.Packages {
		if strings.TrimSpace(p) == "" {
			return bad("mirror.packages", c.Mirror.Packages, "patterns must not be empty")
		}
	}
	return nil
}

func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("not a host:port listen address")
	}
	if host != "" && net.ParseIP(host) == nil && strings.ContainsAny(host, " /\\") {
		return fmt.Errorf("invalid host %q", host)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("invalid port %q", port)
	}
	return nil
}

// validateStore checks [store]: the backend, and for S3 the bucket, the
// endpoint URL, and that no per-machine size limit is asked of a shared
// bucket.
func (c *Config) validateStore(bad func(key string, value any, why string) error) error {
	switch c.Store.Backend {
	case BackendLocal:
		return nil
	case BackendS3:
	default:
		return bad("store.backend", c.Store.Backend, fmt.Sprintf("must be %q or %q", BackendLocal, BackendS3))
	}
	s3 := &c.Store.S3
	if strings.TrimSpace(s3.Bucket) == "" {
		return bad("store.s3.bucket", s3.Bucket, "is required with store.backend = \"s3\" (the bucket must exist)")
	}
	if s3.Endpoint != "" {
		u, err := module.ParseBaseURL(s3.Endpoint)
		if err != nil {
			return bad("store.s3.endpoint", s3.Endpoint, err.Error())
		}
		s3.Endpoint = u.String()
	}
	if strings.HasPrefix(s3.Prefix, "/") || strings.Contains(s3.Prefix, "..") {
		return bad("store.s3.prefix", s3.Prefix, "must be a relative key prefix such as \"registry/\"")
	}
	if c.Cache.MaxSize != 0 {
		return bad("cache.max_size", c.Cache.MaxSize, "cannot be set with store.backend = \"s3\": replicas cannot share one LRU; use a bucket lifecycle rule (see the README)")
	}
	return nil
}
