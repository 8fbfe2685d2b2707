package upstream

// Defaults for upstream locations and manners, when a caller leaves them
// empty (config.Defaults holds the same, tied by a test).
const (
	DefaultIndexURL    = "https://mooncakes.io/git/index"
	DefaultDownloadURL = "https://download.mooncakes.io"
	DefaultAPIURL      = "https://mooncakes.io"
	// DefaultUserAgent: upstream's firewall rejects requests without an
	// agent, and it should start with "mooncake/" like the client's.
	DefaultUserAgent = "mooncake/0.1.0 (moonbit-registry)"
)
