package manifest_test

import (
	"slices"
	"testing"

	"moonbit-registry/manifest"
)

// TestParseLine: the fields the registry interprets, strictly where a
// client needs them (version, deps) and leniently where it only shows
// them (a description of another type is left empty, not the version).
func TestParseLine(t *testing.T) {
	for _, tt := range []struct {
		name, line string
		want       manifest.Entry // Module, Raw filled in by the test
		err        bool
	}{
		{"a mooncakes line", `{"name": "a/b", "version": "1.2.0", "deps": {"c/d": "0.1.0", "e/f": {"path": "../f"}}, "checksum": "ab", "description": "B", "keywords": ["x"], "license": "MIT", "repository": "r", "created_at": "2026-01-01T00:00:00.000000+00:00"}`,
			manifest.Entry{Version: "1.2.0", Checksum: "ab", Deps: map[string]manifest.Dep{"c/d": {Version: "0.1.0"}, "e/f": {Path: "../f"}},
				Description: "B", Keywords: []string{"x"}, License: "MIT", Repository: "r", CreatedAt: "2026-01-01T00:00:00.000000+00:00"}, false},
		{"deprecated with a reason", `{"version": "1.0.0", "deprecated": "use x"}`, manifest.Entry{Version: "1.0.0", Deprecated: "use x"}, false},
		{"deprecated: true", `{"version": "1.0.0", "deprecated": true}`, manifest.Entry{Version: "1.0.0", Deprecated: "deprecated"}, false},
		{"deprecated: false", `{"version": "1.0.0", "deprecated": false}`, manifest.Entry{Version: "1.0.0"}, false},
		{"yanked with a reason", `{"version": "1.0.0", "yanked": true, "yanked_reason": "broken"}`, manifest.Entry{Version: "1.0.0", Yanked: true, YankedReason: "broken"}, false},
		{"descriptive fields of other types", `{"version": "1.0.0", "description": 1, "keywords": "x", "license": null}`, manifest.Entry{Version: "1.0.0"}, false},
		{"no version", `{"name": "a/b"}`, manifest.Entry{}, true},
		{"not semver", `{"version": "1.0"}`, manifest.Entry{}, true},
		{"a dependency of neither form", `{"version": "1.0.0", "deps": {"c/d": 1}}`, manifest.Entry{}, true},
		{"not an object", `["1.0.0"]`, manifest.Entry{}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := manifest.ParseLine("a/b", []byte(tt.line))
			if tt.err {
				if err == nil {
					t.Fatalf("ParseLine accepted it: %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			want.Module, want.Raw = "a/b", []byte(tt.line)
			if got.Module != want.Module || got.Version != want.Version || got.Checksum != want.Checksum || got.Yanked != want.Yanked ||
				got.YankedReason != want.YankedReason || got.Deprecated != want.Deprecated || got.Description != want.Description ||
				got.License != want.License || got.Repository != want.Repository || got.CreatedAt != want.CreatedAt ||
				!slices.Equal(got.Keywords, want.Keywords) || string(got.Raw) != string(want.Raw) || len(got.Deps) != len(want.Deps) {
				t.Errorf("ParseLine = %+v\nwant %+v", got, want)
			}
			for k, d := range want.Deps {
				if got.Deps[k] != d {
					t.Errorf("dep %s = %+v, want %+v", k, got.Deps[k], d)
				}
			}
			if got.Archive().String() != "a/b@"+want.Version {
				t.Errorf("Archive() = %s", got.Archive())
			}
		})
	}
}
