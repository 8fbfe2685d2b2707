package config

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"

	"moonbit-registry/module"
)

// Source is one [[sources]] table: another registry (mooncakes.io,
// another moonbit-registry) that serves the modules of its owners. Each
// owner comes from exactly one source; archives are fetched from the
// source whose index line the client got. A table without owners serves
// everything else, in place of [upstream] (at most one such table).
type Source struct {
	// Name identifies the source in logs and in the served index's
	// commits (letters, digits, '-', '_').
	Name        string `toml:"name"`
	IndexURL    string `toml:"index_url"`
	DownloadURL string `toml:"download_url"`
	// APIURL is only used by a source without owners (search and
	// metadata); default DownloadURL.
	APIURL string   `toml:"api_url"`
	Owners []string `toml:"owners"`
	// TokenEnv names the environment variable holding a bearer token for
	// the source; BasicEnv one holding "user:password" for basic auth.
	// At most one; credentials never live in the file.
	TokenEnv string `toml:"token_env"`
	BasicEnv string `toml:"basic_env"`

	// Authorization is the header the credentials make ("" without);
	// filled in by Load.
	Authorization string `toml:"-"`
	// index is the table's place among the file's [[sources]].
	index int
}

// validateSources checks [[sources]], reads their credentials from env
// (os.Environ form), and moves a table without owners into [upstream],
// so that afterwards Sources holds only sources with owners.
func (c *Config) validateSources(src sources, env []string) error {
	bad := func(i int, key, why string) error {
		where := fmt.Sprintf("sources[%d]", i)
		return fmt.Errorf("%w: %s.%s: %s (%s)", ErrInvalid, where, key, why, src.of(fmt.Sprintf("%s.%s", where, key)))
	}
	lookup := func(name string) string {
		for _, kv := range env {
			if k, v, ok := strings.Cut(kv, "="); ok && k == name {
				return v
			}
		}
		return ""
	}
	names := map[string]bool{}
	ownerOf := map[string]string{}
	var withOwners []Source
	everythingElse := -1
	for i := range c.Sources {
		s := &c.Sources[i]
		if err := module.ValidateSourceName(s.Name); err != nil {
			return bad(i, "name", fmt.Sprintf("%q: %v", s.Name, err))
		}
		if names[s.Name] {
			return bad(i, "name", fmt.Sprintf("%q names two sources", s.Name))
		}
		names[s.Name] = true
		s.index = i
		if s.APIURL == "" {
			s.APIURL = s.DownloadURL
		}
		for _, u := range []struct {
			key string
			val *string
		}{{"index_url", &s.IndexURL}, {"download_url", &s.DownloadURL}, {"api_url", &s.APIURL}} {
			parsed, err := module.ParseBaseURL(*u.val)
			if err != nil {
				return bad(i, u.key, err.Error())
			}
			*u.val = parsed.String()
		}
		for _, o := range s.Owners {
			if err := module.ValidateOwner(o); err != nil {
				return bad(i, "owners", fmt.Sprintf("%q is not a module owner name", o))
			}
			if prev, ok := ownerOf[o]; ok {
				return bad(i, "owners", fmt.Sprintf("owner %q is served by source %q already: each owner comes from one source", o, prev))
			}
			if slices.Contains(c.Private.Owners, o) {
				return bad(i, "owners", fmt.Sprintf("owner %q is reserved for private modules ([private] owners)", o))
			}
			ownerOf[o] = s.Name
		}
		switch {
		case s.TokenEnv != "" && s.BasicEnv != "":
			return bad(i, "token_env", "set token_env or basic_env, not both")
		case s.TokenEnv != "":
			v := lookup(s.TokenEnv)
			if v == "" {
				return bad(i, "token_env", fmt.Sprintf("the environment variable %s is not set", s.TokenEnv))
			}
			s.Authorization = "Bearer " + v
		case s.BasicEnv != "":
			v := lookup(s.BasicEnv)
			if !strings.Contains(v, ":") {
				return bad(i, "basic_env", fmt.Sprintf("the environment variable %s must hold user:password", s.BasicEnv))
			}
			s.Authorization = "Basic " + base64.StdEncoding.EncodeToString([]byte(v))
		}
		if len(s.Owners) > 0 {
			withOwners = append(withOwners, *s)
			continue
		}
		if everythingElse >= 0 {
			return bad(i, "owners", fmt.Sprintf("sources %q and %q both lack owners: only one source serves everything else", c.Sources[everythingElse].Name, s.Name))
		}
		everythingElse = i
	}
	if everythingElse >= 0 {
		for _, k := range []string{"upstream.index_url", "upstream.download_url", "upstream.api_url"} {
			if _, set := src[k]; set {
				return bad(everythingElse, "owners", "a source without owners takes the place of [upstream], but "+k+" is set too ("+src.of(k)+"): keep one of them")
			}
		}
		s := c.Sources[everythingElse]
		c.Upstream.IndexURL, c.Upstream.DownloadURL, c.Upstream.APIURL = s.IndexURL, s.DownloadURL, s.APIURL
		c.Upstream.Authorization = s.Authorization
		from := fmt.Sprintf("sources[%d] (%s)", everythingElse, s.Name)
		src["upstream.index_url"], src["upstream.download_url"], src["upstream.api_url"] = from, from, from
	}
	c.Sources = withOwners
	return nil
}

// OwnersElsewhere are the owners upstream is never asked about: the
// private ones and those of [[sources]].
func (c Config) OwnersElsewhere() []string {
	out := slices.Clone(c.Private.Owners)
	for _, s := range c.Sources {
		out = append(out, s.Owners...)
	}
	return out
}
