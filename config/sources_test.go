package config

import (
	"strings"
	"testing"
)

const centralSource = `
[[sources]]
name = "central"
index_url = "http://127.0.0.1:9001/git/index"
download_url = "http://127.0.0.1:9001/"
owners = ["corp", "infra"]
token_env = "CENTRAL_TOKEN"
`

func TestSources(t *testing.T) {
	dir := writeConfig(t, "[private]\nowners = [\"acme\"]\n"+centralSource+`
[[sources]]
name = "public"
index_url = "http://127.0.0.1:9002/git/index"
download_url = "http://127.0.0.1:9002"
basic_env = "PUBLIC_CREDS"
`)
	cfg, err := Load(LoadOptions{Root: dir, Env: []string{"CENTRAL_TOKEN=s3cret", "PUBLIC_CREDS=bot:pw"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Sources) != 1 {
		t.Fatalf("Sources = %+v, want only the one with owners", cfg.Sources)
	}
	c := cfg.Sources[0]
	if c.Name != "central" || c.DownloadURL != "http://127.0.0.1:9001" || c.APIURL != "http://127.0.0.1:9001" ||
		c.Authorization != "Bearer s3cret" || strings.Join(c.Owners, ",") != "corp,infra" {
		t.Errorf("central = %+v", c)
	}
	// The source without owners takes [upstream]'s place.
	if cfg.Upstream.IndexURL != "http://127.0.0.1:9002/git/index" || cfg.Upstream.DownloadURL != "http://127.0.0.1:9002" ||
		cfg.Upstream.Authorization != "Basic Ym90OnB3" {
		t.Errorf("upstream = %+v", cfg.Upstream)
	}
	if got := cfg.sources.of("upstream.index_url"); !strings.Contains(got, "public") {
		t.Errorf("upstream.index_url comes from %q", got)
	}
}

func TestSourcesRefused(t *testing.T) {
	env := []string{"CENTRAL_TOKEN=s3cret"}
	for _, tc := range []struct {
		name, file, want string
		env              []string
	}{
		{"owner twice", centralSource + strings.ReplaceAll(centralSource, `"central"`, `"other"`), `owner "corp" is served by source "central" already`, env},
		{"name twice", centralSource + strings.ReplaceAll(centralSource, `"corp", "infra"`, `"x"`), `"central" names two sources`, env},
		{"reserved owner", "[private]\nowners = [\"corp\"]\n" + centralSource, "reserved for private modules", env},
		{"missing credentials", centralSource, "CENTRAL_TOKEN is not set", nil},
		{"bad name", strings.ReplaceAll(centralSource, `"central"`, `"cen tral"`), "sources[0].name", env},
		{"bad owner", strings.ReplaceAll(centralSource, `"infra"`, `"in/fra"`), `"in/fra" is not a module owner name`, env},
		{"bad URL", strings.ReplaceAll(centralSource, `http://127.0.0.1:9001/git/index`, `ftp://x`), "sources[0].index_url", env},
		{"both credentials", strings.ReplaceAll(centralSource, "token_env", "basic_env = \"B\"\ntoken_env"), "not both", env},
		{"two without owners", "[[sources]]\nname = \"a\"\nindex_url = \"http://h/git/index\"\ndownload_url = \"http://h\"\n" +
			"[[sources]]\nname = \"b\"\nindex_url = \"http://h/git/index\"\ndownload_url = \"http://h\"\n", "only one source serves everything else", nil},
		{"with [upstream] too", "[upstream]\nindex_url = \"http://u/git/index\"\n[[sources]]\nname = \"a\"\nindex_url = \"http://h/git/index\"\ndownload_url = \"http://h\"\n", "keep one of them", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(LoadOptions{Root: writeConfig(t, tc.file), Env: tc.env})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
}

func TestPublishTokensRead(t *testing.T) {
	pub := HashToken("publisher")
	for _, tc := range []struct {
		name       string
		authTokens []string
		want       int
	}{
		{"reading open", nil, 0},                        // publish tokens do not turn read auth on
		{"reading closed", []string{HashToken("r")}, 2}, // a publish token also reads
	} {
		s := Server{AuthTokens: tc.authTokens, PublishTokens: []string{pub}}
		if tokens, _ := s.Credentials(); len(tokens) != tc.want {
			t.Errorf("%s: %d read tokens, want %d", tc.name, len(tokens), tc.want)
		}
		if len(s.PublishDigests()) != 1 {
			t.Errorf("%s: publish digests %v", tc.name, s.PublishDigests())
		}
	}
}

func TestSourcesInSettings(t *testing.T) {
	cfg, err := Load(LoadOptions{Root: writeConfig(t, centralSource), Env: []string{"CENTRAL_TOKEN=s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Setting{}
	for _, s := range cfg.Settings() {
		got[s.Key] = s
	}
	if s := got["sources[0].owners"]; s.Value != `["corp", "infra"]` || !strings.HasSuffix(s.Source, "line 6") {
		t.Errorf("sources[0].owners = %+v", s)
	}
	if s := got["sources[0].token_env"]; s.Value != `"CENTRAL_TOKEN"` {
		t.Errorf("sources[0].token_env = %+v", s)
	}
	for k, s := range got {
		if strings.Contains(s.Value, "s3cret") {
			t.Errorf("%s shows the secret: %s", k, s.Value)
		}
	}
}
