package config

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// nestedSchema exercises what the loader offers beyond two plain levels:
// a nested table and an array of tables, as [store.s3] and [[sources]]
// will use them.
type nestedSchema struct {
	Store struct {
		Backend string `toml:"backend"`
		S3      struct {
			Endpoint  string   `toml:"endpoint"`
			PathStyle bool     `toml:"path_style"`
			Timeout   Duration `toml:"timeout"`
		} `toml:"s3"`
	} `toml:"store"`
	Sources []struct {
		Name string `toml:"name"`
		URL  string `toml:"url"`
	} `toml:"sources"`
}

const nestedFile = `# a comment
[store]
backend = "s3"

[store.s3]
endpoint = "http://127.0.0.1:7070"
timeout = "5s"

[[sources]]
name = "public"
url = "https://mooncakes.io"

[[sources]]
name = "team"
url = "https://registry.example"
`

func TestNestedTablesAndArraysOfTables(t *testing.T) {
	var v nestedSchema
	src := sources{}
	if err := decodeFile("registry.toml", []byte(nestedFile), &v, src); err != nil {
		t.Fatal(err)
	}
	if v.Store.Backend != "s3" || v.Store.S3.Endpoint != "http://127.0.0.1:7070" || v.Store.S3.Timeout.D().Seconds() != 5 ||
		len(v.Sources) != 2 || v.Sources[1].URL != "https://registry.example" {
		t.Fatalf("decoded %+v", v)
	}
	for key, line := range map[string]int{
		"store.backend":     3,
		"store.s3.endpoint": 6,
		"store.s3.timeout":  7,
		"sources[0].name":   10,
		"sources[1].name":   14,
		"sources[1].url":    15,
	} {
		if got, want := src.of(key), "registry.toml line "+strconv.Itoa(line); got != want {
			t.Errorf("source of %s = %q, want %q", key, got, want)
		}
	}

	keys := fieldsOf(&v)
	names := slices.Sorted(maps.Keys(keys))
	if want := []string{"store.backend", "store.s3.endpoint", "store.s3.path_style", "store.s3.timeout"}; !slices.Equal(names, want) {
		t.Errorf("keys = %v, want %v (arrays of tables are file-only)", names, want)
	}
	env := []string{
		"MOONBIT_REGISTRY_STORE_S3_PATH_STYLE=true",
		"MOONBIT_REGISTRY_STORE_S3_ENDPOINT=http://127.0.0.1:9000",
		"MOONBIT_REGISTRY_DIR=/elsewhere", // a flag's variable, not configuration
	}
	if err := applyEnv(env, keys, src); err != nil {
		t.Fatal(err)
	}
	if !v.Store.S3.PathStyle || v.Store.S3.Endpoint != "http://127.0.0.1:9000" || src.of("store.s3.endpoint") != "environment MOONBIT_REGISTRY_STORE_S3_ENDPOINT" {
		t.Errorf("after the environment: %+v, source %q", v.Store.S3, src.of("store.s3.endpoint"))
	}
	err := applyEnv([]string{"MOONBIT_REGISTRY_STORE_S3_BUCKETS=x"}, keys, src)
	if err == nil || !strings.Contains(err.Error(), `"store.s3_buckets"`) {
		t.Errorf("unknown nested key in the environment: %v", err)
	}
}

func TestUnknownKeyInArrayOfTablesNamesItsLine(t *testing.T) {
	var v nestedSchema
	err := decodeFile("registry.toml", []byte(nestedFile+"colour = \"blue\"\n"), &v, sources{})
	if err == nil || !strings.Contains(err.Error(), "line 16") || !strings.Contains(err.Error(), "sources.colour") {
		t.Errorf("err = %v, want the unknown key and its line", err)
	}
}

func TestLineOf(t *testing.T) {
	data := []byte(nestedFile)
	for _, tt := range []struct {
		key   toml.Key
		index int
		want  int
	}{
		{toml.Key{"store"}, -1, 2},
		{toml.Key{"store", "s3"}, -1, 5},
		{toml.Key{"sources", "url"}, 0, 11},
		{toml.Key{"sources", "url"}, 1, 15},
		{toml.Key{"sources", "url"}, 2, 0},
		{toml.Key{"store", "missing"}, -1, 0},
	} {
		if got := lineOf(data, tt.key, tt.index); got != tt.want {
			t.Errorf("lineOf(%v, %d) = %d, want %d", tt.key, tt.index, got, tt.want)
		}
	}
}
