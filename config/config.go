// Package config defines registry.toml: its schema, its defaults, and how a
// file, the environment and command-line flags combine into one validated
// Config (flag > environment > file > defaults).
package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// FileName is the configuration file's name inside the registry root.
const FileName = "registry.toml"

// EnvPrefix starts every environment override: MOONBIT_REGISTRY_<SECTION>_<KEY>.
const EnvPrefix = "MOONBIT_REGISTRY_"

// Config is the whole registry configuration. Paths in it are absolute after
// Load: relative ones in the file resolve against Root.
type Config struct {
	// Root is the registry root directory (the --dir flag); not a file key.
	Root string `toml:"-"`
	// File is the configuration file that was read, or "" if none existed.
	File string `toml:"-"`
	// sources says where each key that is not at its default came from.
	sources sources

	Server   Server   `toml:"server"`
	Upstream Upstream `toml:"upstream"`
	Index    Index    `toml:"index"`
	Cache    Cache    `toml:"cache"`
	Store    Store    `toml:"store"`
	Mirror   Mirror   `toml:"mirror"`
	Private  Private  `toml:"private"`
	// Sources are further registries, each serving the modules of some
	// owners ([[sources]] tables; see sources.go).
	Sources []Source `toml:"sources"`
}

// Private is the [private] section: the team's own modules.
type Private struct {
	// Owners are the reserved owners: only they may be published here, and
	// upstream's modules of theirs are never served (so a public module
	// cannot stand in for an internal one).
	Owners []string `toml:"owners"`
	// Dir keeps the private index lines with store.backend = "local"
	// (with "s3" they live in the bucket, under <prefix>private/).
	Dir string `toml:"dir"`
	// MaxArchiveSize is the largest archive publish takes.
	MaxArchiveSize Size `toml:"max_archive_size"`
}

// Store backends.
const (
	// BackendLocal keeps archives in cache.dir on this machine.
	BackendLocal = "local"
	// BackendS3 keeps them in one S3-compatible bucket that replicas share.
	BackendS3 = "s3"
)

// Store is the [store] section: where archives are kept.
type Store struct {
	// Backend is BackendLocal (the default) or BackendS3.
	Backend string `toml:"backend"`
	S3      S3     `toml:"s3"`
}

// S3 is the [store.s3] section. Credentials never come from here: the
// standard AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY variables or the
// shared credentials file give them.
type S3 struct {
	// Endpoint is the server's URL (http:// allowed); "" is AWS S3.
	Endpoint string `toml:"endpoint"`
	Bucket   string `toml:"bucket"`
	// Prefix starts every key, so a bucket can hold other things too.
	Prefix string `toml:"prefix"`
	// Region is the bucket's region; "" takes AWS_REGION or us-east-1.
	Region string `toml:"region"`
	// PathStyle puts the bucket in the URL path, as most self-hosted
	// servers want.
	PathStyle bool `toml:"path_style"`
	// LeaseTTL: a replica fetching an archive for the fleet renews its
	// lease every third of this; one not renewed this long (its replica
	// died) is taken over.
	LeaseTTL Duration `toml:"lease_ttl"`
	// Redirect answers archive requests with a redirect to a signed URL
	// of the bucket (valid 15 minutes), for setups where clients reach the
	// store themselves; the bytes then do not pass through the replicas.
	Redirect bool `toml:"redirect"`
}

// Server is the [server] section: how clients reach us.
type Server struct {
	Listen string `toml:"listen"`
	// BaseURL is what clients are told to use (MOONCAKES_REGISTRY); empty
	// means http://<listen>.
	BaseURL           string   `toml:"base_url"`
	ReadHeaderTimeout Duration `toml:"read_header_timeout"`
	ReadTimeout       Duration `toml:"read_timeout"`
	// WriteTimeout is 0 (none) by default: a large archive to a slow client
	// may legitimately take long.
	WriteTimeout    Duration `toml:"write_timeout"`
	IdleTimeout     Duration `toml:"idle_timeout"`
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	// DrainDelay keeps serving for this long after a shutdown signal while
	// /readyz answers 503, so a load balancer stops sending new requests
	// before the listener closes.
	DrainDelay Duration `toml:"drain_delay"`
	// FirstSyncWait: a clone that arrives before the index's first sync
	// waits this long for it before it gets 503.
	FirstSyncWait Duration `toml:"first_sync_wait"`
	// Offline never contacts upstream: cached archives only.
	Offline bool `toml:"offline"`
	// AuthTokens are hex SHA-256 digests of accepted bearer tokens and
	// AuthUsers "name:bcrypt-hash" basic-auth users; either one non-empty
	// makes every route but /healthz require credentials.
	AuthTokens []string `toml:"auth_tokens"`
	AuthUsers  []string `toml:"auth_users"`
	// PublishTokens are hex SHA-256 digests of the bearer tokens that may
	// publish, deprecate and yank private modules over HTTP (they may
	// also read); none turns the publish endpoint off.
	PublishTokens []string `toml:"publish_tokens"`
	// CertFile and KeyFile (PEM, both or neither) make the server speak HTTPS.
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
}

// Upstream is the [upstream] section: the registry we mirror.
type Upstream struct {
	IndexURL    string `toml:"index_url"`
	DownloadURL string `toml:"download_url"`
	APIURL      string `toml:"api_url"`
	UserAgent   string `toml:"user_agent"`
	// Timeout bounds one upstream request attempt.
	Timeout Duration `toml:"timeout"`
	// Retries is how many times a failed fetch (5xx, 408, 429, connection
	// error) is tried again; 404 never is.
	Retries int `toml:"retries"`
	// Authorization is the header for a [[sources]] table without owners
	// that took upstream's place with credentials; "" otherwise.
	Authorization string `toml:"-"`
}

// Index is the [index] section: the local git mirror of the index.
type Index struct {
	Dir          string   `toml:"dir"`
	SyncInterval Duration `toml:"sync_interval"`
	// StaleAfter: while syncs fail for this long, /readyz answers 503;
	// 0 means 3 × SyncInterval.
	StaleAfter Duration `toml:"stale_after"`
	Branch     string   `toml:"branch"`
	GitTimeout Duration `toml:"git_timeout"`
	// CheckInterval: a client's index request makes the registry look at
	// upstream's tip (and sync first when it moved) when it last looked
	// longer ago than this; 0 never does (sync_interval alone).
	CheckInterval Duration `toml:"check_interval"`
}

// Cache is the [cache] section: the archive store.
type Cache struct {
	Dir string `toml:"dir"`
	// HTTPDir holds cached upstream responses (symbols, assets, API).
	HTTPDir string `toml:"http_dir"`
	// MaxSize is the store's size limit; 0 means unlimited.
	MaxSize              Size `toml:"max_size"`
	MaxConcurrentFetches int  `toml:"max_concurrent_fetches"`
	// MaxPassthroughSize is the largest symbols.zip or asset kept on disk;
	// larger ones are passed on without being kept.
	MaxPassthroughSize Size `toml:"max_passthrough_size"`
	// NotFoundTTL is how long an upstream 404 for symbols, assets or an
	// API path is remembered; 0 remembers none.
	NotFoundTTL Duration `toml:"not_found_ttl"`
}

// Mirror is the [mirror] section: defaults for the mirror command.
type Mirror struct {
	// Packages are the patterns a bare `mirror` uses.
	Packages    []string `toml:"packages"`
	Concurrency int      `toml:"concurrency"`
}

// Defaults returns the built-in configuration: local disk under the registry
// root, the public mooncakes.io upstream. This is the one table of the
// product's defaults; app hands every value to the packages, whose own
// fallbacks for a zero option TestDefaultsAgreeWithPackages keeps equal.
func Defaults() Config {
	return Config{
		Server: Server{
			Listen:            "127.0.0.1:8080",
			ReadHeaderTimeout: Duration(10 * time.Second),
			ReadTimeout:       Duration(60 * time.Second),
			WriteTimeout:      0,
			IdleTimeout:       Duration(120 * time.Second),
			ShutdownTimeout:   Duration(30 * time.Second),
			FirstSyncWait:     Duration(30 * time.Second),
			AuthTokens:        []string{},
			AuthUsers:         []string{},
			PublishTokens:     []string{},
		},
		Upstream: Upstream{
			IndexURL:    "https://mooncakes.io/git/index",
			DownloadURL: "https://download.mooncakes.io",
			APIURL:      "https://mooncakes.io",
			UserAgent:   "mooncake/0.1.0 (moonbit-registry)",
			Timeout:     Duration(time.Minute),
			Retries:     3,
		},
		Index: Index{
			Dir:           "data/index",
			SyncInterval:  Duration(5 * time.Minute),
			Branch:        "main",
			GitTimeout:    Duration(2 * time.Minute),
			CheckInterval: Duration(10 * time.Second),
		},
		Cache: Cache{
			Dir:                  "data/packages",
			HTTPDir:              "data/http-cache",
			MaxConcurrentFetches: 16,
			MaxPassthroughSize:   1 << 30,
			NotFoundTTL:          Duration(time.Minute),
		},
		Store: Store{Backend: BackendLocal, S3: S3{LeaseTTL: Duration(30 * time.Second)}},
		Mirror: Mirror{
			Packages:    []string{},
			Concurrency: 8,
		},
		Private: Private{
			Owners:         []string{},
			Dir:            "data/private",
			MaxArchiveSize: Size(32 << 20),
		},
	}
}

// Duration is a time.Duration written as a string in the file ("5m", "30s").
type Duration time.Duration

// UnmarshalText parses a Go duration string; negative durations are errors.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. \"30s\", \"5m\")", b)
	}
	if v < 0 {
		return fmt.Errorf("invalid duration %q: negative", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration in Go's notation.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Size is a byte count written as "0", "512MiB", "20GiB", "1GB" or a plain
// number of bytes.
type Size int64

var sizeUnits = []struct {
	suffix string
	factor int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// UnmarshalText parses a size with an optional binary or decimal unit.
func (s *Size) UnmarshalText(b []byte) error {
	text := strings.TrimSpace(string(b))
	num, factor := text, int64(1)
	for _, u := range sizeUnits {
		if n, ok := strings.CutSuffix(text, u.suffix); ok {
			num, factor = strings.TrimSpace(n), u.factor
			break
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 0 || (v > 0 && factor > (1<<62)/v) {
		return fmt.Errorf("invalid size %q (want e.g. \"0\", \"512MiB\", \"20GiB\")", b)
	}
	*s = Size(v * factor)
	return nil
}

// MarshalText writes the size in the largest binary unit that divides it.
func (s Size) MarshalText() ([]byte, error) {
	for _, u := range []struct {
		suffix string
		factor int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if s != 0 && int64(s)%u.factor == 0 {
			return []byte(strconv.FormatInt(int64(s)/u.factor, 10) + u.suffix), nil
		}
	}
	return []byte(strconv.FormatInt(int64(s), 10)), nil
}
