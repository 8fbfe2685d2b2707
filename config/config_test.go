package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"moonbit-registry/fleet"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestMissingFileMeansDefaults(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Load(LoadOptions{Root: dir})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.File != "" {
		t.Errorf("File = %q, want empty", cfg.File)
	}
	want := Defaults()
	if cfg.Server.Listen != want.Server.Listen || cfg.Upstream.IndexURL != want.Upstream.IndexURL {
		t.Errorf("got %+v, want defaults", cfg)
	}
	if cfg.Server.BaseURL != "http://127.0.0.1:8080" {
		t.Errorf("BaseURL = %q, want derived from listen", cfg.Server.BaseURL)
	}
	if cfg.Cache.Dir != filepath.Join(dir, "data", "packages") || cfg.Index.Dir != filepath.Join(dir, "data", "index") {
		t.Errorf("paths not resolved against root: %q %q", cfg.Cache.Dir, cfg.Index.Dir)
	}
	if cfg.Index.SyncInterval.D() != 5*time.Minute || cfg.Mirror.Concurrency != 8 || cfg.Index.Branch != "main" {
		t.Errorf("defaults wrong: %+v", cfg)
	}
}

func TestExplicitMissingFileIsAnError(t *testing.T) {
	_, err := Load(LoadOptions{Root: t.TempDir(), File: filepath.Join(t.TempDir(), "nope.toml")})
	if err == nil || !strings.Contains(err.Error(), "nope.toml") {
		t.Fatalf("err = %v, want an error naming the file", err)
	}
}

func TestPrecedence(t *testing.T) {
	dir := writeConfig(t, `
[server]
listen = "127.0.0.1:9001"
offline = true
[upstream]
timeout = "7s"
retries = 5
[mirror]
packages = ["moonbitlang/*"]
`)
	tests := []struct {
		name    string
		env     []string
		flags   []Override
		listen  string
		timeout time.Duration
		retries int
		pkgs    []string
	}{
		{name: "file over defaults", listen: "127.0.0.1:9001", timeout: 7 * time.Second, retries: 5, pkgs: []string{"moonbitlang/*"}},
		{
			name:   "env over file",
			env:    []string{"MOONBIT_REGISTRY_SERVER_LISTEN=127.0.0.1:9002", "MOONBIT_REGISTRY_UPSTREAM_TIMEOUT=9s", "MOONBIT_REGISTRY_MIRROR_PACKAGES=a/b, c/*", "PATH=/bin", "MOONBIT_REGISTRY_DIR=/elsewhere"},
			listen: "127.0.0.1:9002", timeout: 9 * time.Second, retries: 5, pkgs: []string{"a/b", "c/*"},
		},
		{
			name:   "flag over env",
			env:    []string{"MOONBIT_REGISTRY_SERVER_LISTEN=127.0.0.1:9002"},
			flags:  []Override{{Key: "server.listen", Value: "127.0.0.1:9003", Name: "--listen"}, {Key: "upstream.retries", Value: "0", Name: "--retries"}},
			listen: "127.0.0.1:9003", timeout: 7 * time.Second, retries: 0, pkgs: []string{"moonbitlang/*"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(LoadOptions{Root: dir, Env: tt.env, Flags: tt.flags})
			if err != nil {
				t.Fatal(err)
			}
			if cfg.File != filepath.Join(dir, FileName) {
				t.Errorf("File = %q", cfg.File)
			}
			if cfg.Server.Listen != tt.listen || cfg.Upstream.Timeout.D() != tt.timeout || cfg.Upstream.Retries != tt.retries {
				t.Errorf("listen=%q timeout=%v retries=%d, want %q %v %d", cfg.Server.Listen, cfg.Upstream.Timeout.D(), cfg.Upstream.Retries, tt.listen, tt.timeout, tt.retries)
			}
			if !reflect.DeepEqual(cfg.Mirror.Packages, tt.pkgs) {
				t.Errorf("packages = %q, want %q", cfg.Mirror.Packages, tt.pkgs)
			}
			if !cfg.Server.Offline {
				t.Error("offline from the file was lost")
			}
		})
	}
}

func TestErrorsNameKeyAndSource(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		env   []string
		flags []Override
		want  []string // substrings of the error
	}{
		{name: "unknown key", file: "[server]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n", want: []string{"line 3", `unknown key "server.lisen"`}},
		{name: "unknown section", file: "\n[severs]\nlisten = \"x\"\n", want: []string{"line 2", `unknown key "severs`}},
		{name: "bad url", file: "[upstream]\n\nindex_url = \"ftp://example.com/index\"\n", want: []string{"upstream.index_url", "line 3", "http"}},
		{name: "url without host", file: "[upstream]\ndownload_url = \"https://\"\n", want: []string{"upstream.download_url", "line 2", "no host"}},
		{name: "bad base url", file: "[server]\nbase_url = \"not a url\"\n", want: []string{"server.base_url", "line 2"}},
		{name: "bad duration", file: "[index]\nsync_interval = \"5 minutes\"\n", want: []string{"line 2", "index.sync_interval", "invalid duration"}},
		{name: "integer duration", file: "[upstream]\ntimeout = 30\n", want: []string{"line 2", "upstream.timeout", "invalid duration"}},
		{name: "negative duration", file: "[server]\nread_timeout = \"-1s\"\n", want: []string{"line 2", "negative"}},
		{name: "bad listen", file: "[server]\nlisten = \"localhost\"\n", want: []string{"server.listen", "line 2", "host:port"}},
		{name: "bad port", file: "[server]\nlisten = \"127.0.0.1:99999\"\n", want: []string{"server.listen", "line 2", "port"}},
		{name: "bad size", file: "[cache]\nmax_size = \"lots\"\n", want: []string{"line 2", "cache.max_size", "invalid size"}},
		{name: "wrong type", file: "[mirror]\nconcurrency = \"eight\"\n", want: []string{"line 2", "concurrency"}},
		{name: "out of range", file: "[mirror]\nconcurrency = 0\n", want: []string{"mirror.concurrency", "line 2", "between"}},
		{name: "bad branch", file: "[index]\nbranch = \"../evil\"\n", want: []string{"index.branch", "line 2"}},
		{name: "syntax error", file: "[server]\nlisten = = 1\n", want: []string{"registry.toml line 2"}},
		{name: "env bad duration", env: []string{"MOONBIT_REGISTRY_INDEX_SYNC_INTERVAL=soon"}, want: []string{"MOONBIT_REGISTRY_INDEX_SYNC_INTERVAL", "invalid duration"}},
		{name: "env unknown key", env: []string{"MOONBIT_REGISTRY_SERVER_LISTN=x"}, want: []string{"MOONBIT_REGISTRY_SERVER_LISTN", "unknown"}},
		{name: "env bad url", env: []string{"MOONBIT_REGISTRY_UPSTREAM_API_URL=mooncakes.io"}, want: []string{"upstream.api_url", "environment MOONBIT_REGISTRY_UPSTREAM_API_URL"}},
		{name: "flag bad listen", flags: []Override{{Key: "server.listen", Value: "nope", Name: "--listen"}}, want: []string{"server.listen", "flag --listen"}},
		{name: "flag bad bool", flags: []Override{{Key: "server.offline", Value: "maybe", Name: "--offline"}}, want: []string{"--offline", "invalid boolean"}},
		{name: "unknown backend", file: "[store]\nbackend = \"gcs\"\n", want: []string{"store.backend", "line 2", `"local" or "s3"`}},
		{name: "s3 without bucket", file: "[store]\nbackend = \"s3\"\n", want: []string{"store.s3.bucket", "required"}},
		{name: "s3 bad endpoint", file: "[store]\nbackend = \"s3\"\n[store.s3]\nbucket = \"b\"\nendpoint = \"minio:9000\"\n", want: []string{"store.s3.endpoint", "line 5"}},
		{name: "s3 with max_size", file: "[cache]\nmax_size = \"10GiB\"\n[store]\nbackend = \"s3\"\n[store.s3]\nbucket = \"b\"\n", want: []string{"cache.max_size", "line 2", "lifecycle"}},
		{name: "env s3 bucket missing", env: []string{"MOONBIT_REGISTRY_STORE_BACKEND=s3"}, want: []string{"store.s3.bucket"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeConfig(t, tt.file)
			_, err := Load(LoadOptions{Root: dir, Env: tt.env, Flags: tt.flags})
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestS3StoreFromEnvironment(t *testing.T) {
	cfg, err := Load(LoadOptions{Root: t.TempDir(), Env: []string{
		"MOONBIT_REGISTRY_STORE_BACKEND=s3", "MOONBIT_REGISTRY_STORE_S3_BUCKET=registry",
		"MOONBIT_REGISTRY_STORE_S3_ENDPOINT=http://127.0.0.1:7070/", "MOONBIT_REGISTRY_STORE_S3_PATH_STYLE=true",
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := S3{Endpoint: "http://127.0.0.1:7070", Bucket: "registry", PathStyle: true, LeaseTTL: Duration(fleet.DefaultLeaseTTL)}
	if cfg.Store.Backend != BackendS3 || cfg.Store.S3 != want {
		t.Errorf("store = %+v, want s3 with %+v", cfg.Store, want)
	}
}

func TestValidationErrorsAreErrInvalid(t *testing.T) {
	dir := writeConfig(t, "[server]\nlisten = \"x\"\n")
	_, err := Load(LoadOptions{Root: dir})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
}

func TestBaseURLTrailingSlashTrimmed(t *testing.T) {
	dir := writeConfig(t, "[server]\nbase_url = \"https://mirror.example.com/\"\n")
	cfg, err := Load(LoadOptions{Root: dir})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.BaseURL != "https://mirror.example.com" {
		t.Errorf("BaseURL = %q", cfg.Server.BaseURL)
	}
}

func TestSizes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{"0", 0, false}, {"1024", 1024, false}, {"20GiB", 20 << 30, false}, {"512 MiB", 512 << 20, false},
		{"1GB", 1e9, false}, {"10B", 10, false}, {"-1", 0, true}, {"GiB", 0, true}, {"1.5GiB", 0, true},
		{"99999999999TiB", 0, true},
	}
	for _, tt := range tests {
		var s Size
		err := s.UnmarshalText([]byte(tt.in))
		if (err != nil) != tt.err || (!tt.err && int64(s) != tt.want) {
			t.Errorf("Size(%q) = %d, %v; want %d, err=%v", tt.in, s, err, tt.want, tt.err)
		}
	}
}

func TestTemplateDecodesToDefaults(t *testing.T) {
	dir := writeConfig(t, Template())
	fromFile, err := Load(LoadOptions{Root: dir})
	if err != nil {
		t.Fatalf("the generated file does not load: %v\n%s", err, Template())
	}
	fromNothing, err := Load(LoadOptions{Root: dir, File: os.DevNull})
	if err != nil {
		t.Fatal(err)
	}
	fromFile.File, fromNothing.File = "", ""
	fromFile.sources, fromNothing.sources = nil, nil // where, not what
	if !reflect.DeepEqual(fromFile, fromNothing) {
		t.Errorf("template differs from defaults:\n file: %+v\n none: %+v", fromFile, fromNothing)
	}
}

func TestInit(t *testing.T) {
	root := filepath.Join(t.TempDir(), "reg")
	res, err := Init(root, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{FileName, "data/index", "data/packages"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("%s missing after init: %v", p, err)
		}
	}
	if res.Overwritten {
		t.Error("first init reported an overwrite")
	}

	// A second init refuses and leaves a user's edits alone.
	edited := []byte("[server]\nlisten = \"127.0.0.1:9999\"\n")
	if err := os.WriteFile(res.File, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(root, false); !errors.Is(err, ErrExists) {
		t.Fatalf("second init: err = %v, want ErrExists", err)
	}
	if got, _ := os.ReadFile(res.File); string(got) != string(edited) {
		t.Error("refused init changed the file")
	}

	res, err = Init(root, true)
	if err != nil || !res.Overwritten {
		t.Fatalf("init --force: %+v, %v", res, err)
	}
	if got, _ := os.ReadFile(res.File); string(got) != Template() {
		t.Error("init --force did not write the template")
	}
	left, _ := filepath.Glob(filepath.Join(root, ".*tmp*"))
	if len(left) > 0 {
		t.Errorf("temp files left behind: %v", left)
	}
}

func TestBaseURLUnreachable(t *testing.T) {
	for _, tt := range []struct {
		listen, base string
		want         bool
	}{
		{"127.0.0.1:8080", "", false},
		{"0.0.0.0:8080", "", true},
		{":8080", "", true},
		{"[::]:8080", "", true},
		{"127.0.0.1:0", "", true},
		{"0.0.0.0:8080", "https://registry.example.com", false},
	} {
		env := []string{"MOONBIT_REGISTRY_SERVER_LISTEN=" + tt.listen}
		if tt.base != "" {
			env = append(env, "MOONBIT_REGISTRY_SERVER_BASE_URL="+tt.base)
		}
		cfg, err := Load(LoadOptions{Root: t.TempDir(), Env: env})
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.Server.BaseURLUnreachable(); got != tt.want {
			t.Errorf("listen %s, base_url %q (%s): %v, want %v", tt.listen, tt.base, cfg.Server.BaseURL, got, tt.want)
		}
	}
}

func TestSettingsSayWhereEachValueCameFrom(t *testing.T) {
	dir := writeConfig(t, "[cache]\nmax_size = \"20GiB\"\n")
	cfg, err := Load(LoadOptions{Root: dir, Env: []string{"MOONBIT_REGISTRY_SERVER_LISTEN=127.0.0.1:9999"},
		Flags: []Override{{Key: "mirror.concurrency", Value: "3", Name: "--concurrency"}}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Setting{}
	for _, s := range cfg.Settings() {
		got[s.Key] = s
	}
	for key, want := range map[string]Setting{
		"cache.max_size":      {Value: `"20GiB"`, Source: filepath.Join(dir, FileName) + " line 2"},
		"server.listen":       {Value: `"127.0.0.1:9999"`, Source: "environment MOONBIT_REGISTRY_SERVER_LISTEN"},
		"mirror.concurrency":  {Value: "3", Source: "flag --concurrency"},
		"index.branch":        {Value: `"main"`, Source: "default"},
		"store.s3.path_style": {Value: "false", Source: "default"},
		"mirror.packages":     {Value: "[]", Source: "default"},
	} {
		if g := got[key]; g.Value != want.Value || g.Source != want.Source {
			t.Errorf("%s = %s (%s), want %s (%s)", key, g.Value, g.Source, want.Value, want.Source)
		}
	}
	if len(got) < 40 {
		t.Errorf("only %d settings listed", len(got))
	}
}
