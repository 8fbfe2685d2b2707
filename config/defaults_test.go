package config_test

import (
	"testing"
	"time"

	"moonbit-registry/cache"
	"moonbit-registry/config"
	"moonbit-registry/fleet"
	"moonbit-registry/indexsync"
	"moonbit-registry/private"
	"moonbit-registry/proxy"
	"moonbit-registry/upstream"
)

// TestDefaultsAgreeWithPackages: config.Defaults is the one table of the
// product's defaults; a package's fallback for an option left at zero (a
// test or another caller) must be the same value, or the registry would
// behave differently with and without the configuration.
func TestDefaultsAgreeWithPackages(t *testing.T) {
	d := config.Defaults()
	dur := func(c config.Duration) time.Duration { return time.Duration(c) }
	for _, tt := range []struct {
		key           string
		config, other any
	}{
		{"server.shutdown_timeout", dur(d.Server.ShutdownTimeout), proxy.DefaultShutdownTimeout},
		{"upstream.index_url", d.Upstream.IndexURL, upstream.DefaultIndexURL},
		{"upstream.download_url", d.Upstream.DownloadURL, upstream.DefaultDownloadURL},
		{"upstream.api_url", d.Upstream.APIURL, upstream.DefaultAPIURL},
		{"upstream.user_agent", d.Upstream.UserAgent, upstream.DefaultUserAgent},
		{"upstream.timeout", dur(d.Upstream.Timeout), upstream.DefaultTimeout},
		{"upstream.retries", d.Upstream.Retries, upstream.DefaultRetries},
		{"index.sync_interval", dur(d.Index.SyncInterval), indexsync.DefaultInterval},
		{"index.branch", d.Index.Branch, indexsync.DefaultBranch},
		{"index.git_timeout", dur(d.Index.GitTimeout), indexsync.DefaultGitTimeout},
		{"index.check_interval", dur(d.Index.CheckInterval), indexsync.DefaultCheckInterval},
		{"cache.max_concurrent_fetches", d.Cache.MaxConcurrentFetches, cache.DefaultMaxConcurrentFetches},
		{"cache.max_passthrough_size", int64(d.Cache.MaxPassthroughSize), int64(proxy.DefaultMaxBodyBytes)},
		{"cache.not_found_ttl", dur(d.Cache.NotFoundTTL), proxy.DefaultNotFoundTTL},
		{"store.s3.lease_ttl", dur(d.Store.S3.LeaseTTL), fleet.DefaultLeaseTTL},
		{"private.max_archive_size", int64(d.Private.MaxArchiveSize), int64(private.DefaultMaxArchiveSize)},
	} {
		if tt.config != tt.other {
			t.Errorf("%s: config's default %v, the package's %v", tt.key, tt.config, tt.other)
		}
	}
}
