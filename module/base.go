package module

import (
	"errors"
	"net/url"
	"strings"
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

// ValidateBranch checks the branch of an index repository: what git
// accepts as a branch name, in a conservative subset (no option-like or
// path-escaping forms).
func ValidateBranch(b string) error {
	ok := b != "" && len(b) <= 200 && !strings.HasPrefix(b, "-") && !strings.HasPrefix(b, "/") &&
		!strings.HasSuffix(b, "/") && !strings.Contains(b, "..") && !strings.Contains(b, "//") &&
		!strings.HasSuffix(b, ".lock")
	for _, r := range b {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._/-", r)) {
			ok = false
		}
	}
	if !ok {
		return errors.New("not a valid git branch name")
	}
	return nil
}

// ValidateSourceName checks the name of a further index source ([[sources]]
// name): 1 to 64 letters, digits, '-' and '_', as refs and commit messages
// carry it.
func ValidateSourceName(name string) error {
	ok := name != "" && len(name) <= 64
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			ok = false
		}
	}
	if !ok {
		return errors.New("want 1 to 64 letters, digits, '-' and '_'")
	}
	return nil
}
