package upstream

import (
	"errors"
	"net/url"
	"strings"
)

// Defaults for upstream locations and manners, shared by the configuration
// and every component that talks upstream.
const (
	DefaultIndexURL    = "https://mooncakes.io/git/index"
	DefaultDownloadURL = "https://download.mooncakes.io"
	DefaultAPIURL      = "https://mooncakes.io"
	// DefaultUserAgent: upstream's firewall rejects requests without an
	// agent, and it should start with "mooncake/" like the client's.
	DefaultUserAgent = "mooncake/0.1.0 (moonbit-registry)"
)

// ParseBaseURL checks a base URL of an upstream service or of this server,
// and returns it without a trailing slash: absolute http(s) with a host, no
// query, fragment or credentials (they would end up in logs). Every
// configured URL goes through it; its errors do not repeat the URL.
func ParseBaseURL(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(s, "/"))
	switch {
	case err != nil:
		return nil, errors.New("not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New("must be an http:// or https:// URL")
	case u.Host == "":
		return nil, errors.New("has no host")
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return nil, errors.New("must not carry a query, fragment or credentials")
	}
	return u, nil
}
