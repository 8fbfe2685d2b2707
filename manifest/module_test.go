package manifest_test

import (
	"encoding/json"
	"testing"
	"time"

	"moonbit-registry/manifest"
)

func TestParseJSON(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      manifest.Module
		msg       string // a part of the error's text, when one is expected
	}{
		{name: "minimal", src: `{"name": "a/b"}`, want: manifest.Module{Name: "a/b"}},
		{name: "every field", src: `{
  "name": "acme/full",
  "version": "1.2.3-rc.1",
  "readme": "README.md",
  "repository": "https://example.org/acme/full",
  "license": "MIT",
  "keywords": ["a", "b"],
  "description": "all of it",
  "source": "src",
  "preferred-target": "wasm-gc",
  "supported-targets": [ "wasm-gc",  "js" ]
}`, want: manifest.Module{Name: "acme/full", Version: "1.2.3-rc.1", Readme: "README.md",
			Repository: "https://example.org/acme/full", License: "MIT", Keywords: []string{"a", "b"},
			Description: "all of it", Source: "src", PreferredTarget: "wasm-gc",
			SupportedTargets: raw(`["wasm-gc","js"]`)}},
		// moon.mod.json, unlike moon.mod, may hold path and git deps.
		{name: "dependency forms", src: `{"name": "a/b", "deps": {
  "s/str": "1.0.0",
  "o/obj": {"version": "2.0.0"},
  "p/path": {"path": "../p"},
  "p/pathv": {"path": "../pv", "version": "0.1.0"},
  "g/git": {"git": "https://example.org/g.git", "branch": "dev"}
}}`, want: manifest.Module{Name: "a/b", Deps: map[string]manifest.Dep{
			"s/str":   {Version: "1.0.0"},
			"o/obj":   {Version: "2.0.0"},
			"p/path":  {Path: "../p"},
			"p/pathv": {Path: "../pv", Version: "0.1.0"},
			"g/git":   {Git: "https://example.org/g.git", Branch: "dev"},
		}}},
		{name: "empty deps", src: `{"name": "a/b", "deps": {}}`, want: manifest.Module{Name: "a/b"}},
		{name: "root-dir", src: `{"name": "a/b", "root-dir": "lib"}`, want: manifest.Module{Name: "a/b", Source: "lib"}},
		{name: "source wins over root-dir", src: `{"name": "a/b", "source": "src", "root-dir": "lib"}`,
			want: manifest.Module{Name: "a/b", Source: "src"}},
		{name: "source wins over a later root-dir", src: `{"name": "a/b", "root-dir": "lib", "source": ""}`,
			want: manifest.Module{Name: "a/b"}},
		{name: "supported-targets expression", src: `{"name": "a/b", "supported-targets": "+all-wasm"}`,
			want: manifest.Module{Name: "a/b", SupportedTargets: raw(`"+all-wasm"`)}},
		{name: "supported-targets empty list", src: `{"name": "a/b", "supported-targets": []}`,
			want: manifest.Module{Name: "a/b", SupportedTargets: raw(`[]`)}},
		{name: "empty keywords", src: `{"name": "a/b", "keywords": []}`, want: manifest.Module{Name: "a/b", Keywords: []string{}}},
		// null is absence, for every optional field (moon's Option<...>).
		{name: "null version", src: `{"name": "a/b", "version": null}`, want: manifest.Module{Name: "a/b"}},
		{name: "null fields", src: `{"name": "a/b", "deps": null, "readme": null,
  "repository": null, "license": null, "keywords": null, "description": null, "source": null,
  "root-dir": null, "preferred-target": null, "supported-targets": null}`,
			want: manifest.Module{Name: "a/b"}},
		{name: "null source leaves root-dir", src: `{"name": "a/b", "root-dir": "lib", "source": null}`,
			want: manifest.Module{Name: "a/b", Source: "lib"}},
		{name: "other fields ignored", src: `{"name": "a/b", "bin-deps": {"t/c": {"path": "../c", "bin-pkg": ["c"]}},
  "warn-list": "-w", "scripts": {"postadd": "x"}, "rule": [{"name": "r", "command": "c"}], "checksum": "x"}`,
			want: manifest.Module{Name: "a/b"}},

		{name: "not JSON", src: `{"name": "a/b"`, msg: "moon.mod.json is not valid JSON"},
		{name: "trailing data", src: `{"name": "a/b"} x`, msg: "moon.mod.json is not valid JSON"},
		{name: "empty", src: ``, msg: "moon.mod.json is not valid JSON"},
		{name: "a string, not an object", src: `"a/b"`, msg: "a string where an object is expected"},
		{name: "a list, not an object", src: `[]`, msg: "an array where an object is expected"},
		{name: "null document", src: `null`, msg: `moon.mod.json has no "name"`},
		{name: "missing name", src: `{"version": "1.0.0"}`, msg: `moon.mod.json has no "name"`},
		{name: "empty name", src: `{"name": ""}`, msg: `moon.mod.json: "name": must not be empty`},
		{name: "null name", src: `{"name": null}`, msg: `"name": must not be empty`},
		{name: "name a number", src: `{"name": 1}`, msg: `moon.mod.json: "name": a number where a string is expected`},
		{name: "keywords a string", src: `{"name": "a/b", "keywords": "x"}`, msg: `moon.mod.json: "keywords": a string where a list is expected`},
		{name: "keywords an object", src: `{"name": "a/b", "keywords": {}}`, msg: `"keywords": an object where a list is expected`},
		{name: "keywords of numbers", src: `{"name": "a/b", "keywords": [1]}`, msg: `"keywords": a number where a string is expected`},
		{name: "deps a list", src: `{"name": "a/b", "deps": ["x/y"]}`, msg: `"deps": an array where an object is expected`},
		{name: "dep a number", src: `{"name": "a/b", "deps": {"x/y": 1}}`, msg: `moon.mod.json: "deps": dependency "x/y": neither a version string nor an object`},
		{name: "dep null", src: `{"name": "a/b", "deps": {"x/y": null}}`, msg: `dependency "x/y"`},
		{name: "dep version a number", src: `{"name": "a/b", "deps": {"x/y": {"version": 1}}}`, msg: `dependency "x/y": a number where a string is expected`},
		{name: "dep path a bool", src: `{"name": "a/b", "deps": {"x/y": {"path": true}}}`, msg: `dependency "x/y": a bool where a string is expected`},
		{name: "bad version", src: `{"name": "a/b", "version": "1.0"}`, msg: `moon.mod.json: "version": "1.0" is not a semantic version`},
		{name: "source with a bad char", src: `{"name": "a/b", "source": "a*b"}`, msg: `"source": must not contain '*'`},
		{name: "source absolute", src: `{"name": "a/b", "source": "/src"}`, msg: `"source": must be a subdirectory`},
		{name: "root-dir with a backslash", src: `{"name": "a/b", "root-dir": "\\src"}`, msg: "must be a subdirectory"},
		{name: "bad preferred-target", src: `{"name": "a/b", "preferred-target": "jvm"}`, msg: `"preferred-target": "jvm" is not a backend`},
		{name: "bad supported-targets expression", src: `{"name": "a/b", "supported-targets": "all-jvm"}`, msg: `"supported-targets": expression "all-jvm": unknown backend`},
		{name: "bad supported-targets list", src: `{"name": "a/b", "supported-targets": ["js", "wasm32"]}`, msg: `"wasm32" is not a backend`},
		{name: "supported-targets an object", src: `{"name": "a/b", "supported-targets": {}}`, msg: "must be a string expression"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := manifest.ParseJSON([]byte(tc.src))
			if tc.msg != "" {
				checkErr(t, err, manifest.JSONFile, tc.msg, 0, 0)
				return
			}
			if err != nil {
				t.Fatalf("ParseJSON: %v", err)
			}
			checkModule(t, got, tc.want)
		})
	}
}

func TestNewLine(t *testing.T) {
	// A time away from UTC: created_at is written in UTC, microseconds.
	now := time.Date(2025, 3, 4, 14, 5, 6, 789012345, time.FixedZone("UTC+9", 9*3600))
	for _, tc := range []struct {
		name string
		m    manifest.Module
		deps map[string]string
		want string
	}{
		{"every field, in the index's order",
			manifest.Module{Name: "acme/full", Version: "1.2.3", Readme: "README.md",
				Repository: "https://example.org/r", License: "MIT", Keywords: []string{"k1", "k2"},
				Description: "d", Source: "src", PreferredTarget: "js", SupportedTargets: raw(`["js","wasm"]`),
				Deps: deps("ignored/dep@9.9.9")}, // the deps argument is what is written
			map[string]string{"z/z": "^1.0.0", "a/a": "0.1.0"},
			`{"name":"acme/full","version":"1.2.3","deps":{"a/a":"0.1.0","z/z":"^1.0.0"},"readme":"README.md",` +
				`"repository":"https://example.org/r","license":"MIT","keywords":["k1","k2"],"description":"d",` +
				`"source":"src","preferred-target":"js","supported-targets":["js","wasm"],` +
				`"checksum":"sum-1","created_at":"2025-03-04T05:05:06.789012+00:00"}`},
		{"minimal: keywords [] when nil, no deps",
			manifest.Module{Name: "a/b", Version: "0.1.0"}, nil,
			`{"name":"a/b","version":"0.1.0","readme":"","repository":"","license":"","keywords":[],"description":"",` +
				`"checksum":"sum-1","created_at":"2025-03-04T05:05:06.789012+00:00"}`},
		{"empty deps omitted, empty keywords kept",
			manifest.Module{Name: "a/b", Version: "0.1.0", Keywords: []string{}}, map[string]string{},
			`{"name":"a/b","version":"0.1.0","readme":"","repository":"","license":"","keywords":[],"description":"",` +
				`"checksum":"sum-1","created_at":"2025-03-04T05:05:06.789012+00:00"}`},
		{"supported-targets expression carried through",
			manifest.Module{Name: "a/b", Version: "0.1.0", SupportedTargets: raw(`"+all-wasm"`)}, nil,
			`{"name":"a/b","version":"0.1.0","readme":"","repository":"","license":"","keywords":[],"description":"",` +
				`"supported-targets":"+all-wasm","checksum":"sum-1","created_at":"2025-03-04T05:05:06.789012+00:00"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := json.Marshal(manifest.NewLine(tc.m, tc.deps, "sum-1", now))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestNewLineFromParsed: a manifest read from moon.mod renders the same
// line as the same manifest read from moon.mod.json (supported-targets
// raw, compacted).
func TestNewLineFromParsed(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	dsl, err := manifest.ParseDSL([]byte("name = \"a/b\"\nversion = \"1.0.0\"\nsupported_targets = [ \"js\" ]"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := manifest.ParseJSON([]byte(`{"name": "a/b", "version": "1.0.0", "supported-targets": [ "js" ]}`))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(manifest.NewLine(dsl, nil, "s", now))
	b, _ := json.Marshal(manifest.NewLine(js, nil, "s", now))
	if string(a) != string(b) {
		t.Errorf("from moon.mod:      %s\nfrom moon.mod.json: %s", a, b)
	}
}
