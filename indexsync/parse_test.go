package indexsync

import (
	"reflect"
	"testing"

	"github.com/rs/zerolog"

	"moonbit-registry/manifest"
)

func TestParseIndex(t *testing.T) {
	t.Parallel()
	type want struct {
		version    string
		checksum   string
		yanked     bool
		deprecated string
		deps       map[string]manifest.Dep
	}
	tests := []struct {
		name string
		data string
		want []want
	}{
		{"empty file", "", nil},
		{"blank lines and CRLF",
			"\n\r\n{\"version\": \"1.0.0\", \"checksum\": \"x\"}\r\n\n",
			[]want{{version: "1.0.0", checksum: "x"}}},
		{"no trailing newline",
			`{"version": "1.0.0"}`,
			[]want{{version: "1.0.0"}}},
		{"later line overrides earlier in place",
			`{"version": "1.0.0", "checksum": "old"}
{"version": "1.1.0", "checksum": "b"}
{"version": "1.0.0", "checksum": "new"}`,
			[]want{{version: "1.0.0", checksum: "new"}, {version: "1.1.0", checksum: "b"}}},
		{"order is first appearance, not semver",
			`{"version": "2.0.0"}
{"version": "1.0.0"}`,
			[]want{{version: "2.0.0"}, {version: "1.0.0"}}},
		{"malformed lines skipped",
			`{"version": "1.0.0"
not json
[1,2]
null
"1.0.0"
{"version": 1}
{"checksum": "no version"}
{"version": "1.0.1"}`,
			[]want{{version: "1.0.1"}}},
		{"invalid semver skipped",
			`{"version": "1.0"}
{"version": "v1.0.0"}
{"version": "01.0.0"}
{"version": ""}
{"version": "1.0.0-beta.1+build.5"}`,
			[]want{{version: "1.0.0-beta.1+build.5"}}},
		{"deps in every form",
			`{"version": "1.0.0", "deps": {"a/b": "0.1.0", "c/d": {"version": "0.2.0"}, "e/f": {"path": "src/x"}, "g/h": {"git": "https://example.invalid/r.git", "branch": "dev", "version": "1.2.3"}, "i/j": {"path": "p", "version": "0.3.0", "extra": true}}}`,
			[]want{{version: "1.0.0", deps: map[string]manifest.Dep{
				"a/b": {Version: "0.1.0"},
				"c/d": {Version: "0.2.0"},
				"e/f": {Path: "src/x"},
				"g/h": {Git: "https://example.invalid/r.git", Branch: "dev", Version: "1.2.3"},
				"i/j": {Path: "p", Version: "0.3.0"},
			}}}},
		{"dep of another type makes the line malformed",
			`{"version": "1.0.0", "deps": {"a/b": 1}}
{"version": "1.0.1", "deps": {"a/b": ["0.1.0"]}}
{"version": "1.0.2", "deps": null}`,
			[]want{{version: "1.0.2"}}},
		{"yanked",
			`{"version": "1.0.0", "yanked": true}
{"version": "1.0.1", "yanked": false}
{"version": "1.0.2", "yanked": "true"}
{"version": "1.0.3"}`,
			[]want{{version: "1.0.0", yanked: true}, {version: "1.0.1"}, {version: "1.0.2"}, {version: "1.0.3"}}},
		{"yank by a later line",
			`{"version": "1.0.0", "checksum": "s"}
{"version": "1.0.0", "checksum": "s", "yanked": true}`,
			[]want{{version: "1.0.0", checksum: "s", yanked: true}}},
		{"deprecated",
			`{"version": "1.0.0", "deprecated": "renamed to o/n"}
{"version": "1.0.1", "deprecated": true}
{"version": "1.0.2", "deprecated": false}
{"version": "1.0.3", "deprecated": {"reason": "x"}}`,
			[]want{{version: "1.0.0", deprecated: "renamed to o/n"}, {version: "1.0.1", deprecated: "deprecated"}, {version: "1.0.2"}, {version: "1.0.3"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseIndex("o/m", []byte(tt.data), zerolog.Nop())
			if len(got) != len(tt.want) {
				t.Fatalf("got %d versions %+v, want %d", len(got), got, len(tt.want))
			}
			for i, w := range tt.want {
				g := got[i]
				if g.Module != "o/m" || g.Version != w.version || g.Checksum != w.checksum || g.Yanked != w.yanked || g.Deprecated != w.deprecated {
					t.Errorf("version %d: got %+v, want %+v", i, g, w)
				}
				if len(w.deps) > 0 || len(g.Deps) > 0 {
					if !reflect.DeepEqual(g.Deps, w.deps) {
						t.Errorf("version %d deps: got %+v, want %+v", i, g.Deps, w.deps)
					}
				}
				if len(g.Raw) == 0 || g.Raw[0] != '{' || g.Raw[len(g.Raw)-1] != '}' {
					t.Errorf("version %d raw: %q", i, g.Raw)
				}
			}
		})
	}
}

func TestParseIndexRawIsCopied(t *testing.T) {
	t.Parallel()
	data := []byte(`{"version": "1.0.0", "x": 1}`)
	got := parseIndex("o/m", data, zerolog.Nop())
	data[0] = 'X'
	if string(got[0].Raw) != `{"version": "1.0.0", "x": 1}` {
		t.Fatalf("Raw shares the file buffer: %s", got[0].Raw)
	}
}
