package manifest_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"moonbit-registry/manifest"
)

// writeTree writes files (slash-separated paths relative to root) with
// their directories.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// req is a Require on a registry version.
func req(from, mod, version string) manifest.Require {
	return manifest.Require{From: from, Module: mod, Dep: manifest.Dep{Version: version}}
}

func TestReadProject(t *testing.T) {
	// One tree holds every project; each case names its path in it.
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"single/moon.mod": "name = \"acme/single\"\nimport {\n  \"z/last@1.0.0\",\n  \"a/first@0.2.0\",\n}\n",

		"json/moon.mod.json": `{"name": "acme/json", "deps": {
  "r/reg": "1.0.0",
  "p/local": {"path": "../local"},
  "g/git": {"git": "https://example.org/g.git"}
}}`,

		// moon.mod wins over moon.mod.json in one directory.
		"both/moon.mod":      `name = "acme/both" import { "from/dsl@1.0.0" }`,
		"both/moon.mod.json": `{"name": "acme/both", "deps": {"from/json": "1.0.0"}}`,

		"nodeps/moon.mod": `name = "acme/nodeps"`,

		// A workspace: members listed out of order; app imports lib (a
		// member) from the registry's point of view, tool names lib by
		// path, and tool has both manifests.
		"ws/moon.work":          "members = [\n  \"./tool\",\n  \"lib\",\n  \"./app\",\n  \"app/\",\n  \"ext\",\n]\n",
		"ws/ext/moon.mod.json":  `{"name": "acme/ext", "deps": {"acme/lib": {"path": "../lib"}, "acme/far": {"path": "../../far"}}}`,
		"ws/app/moon.mod":       "name = \"acme/app\"\nimport {\n  \"moonbitlang/x@0.4.6\",\n  \"acme/lib@0.1.0\",\n}\n",
		"ws/lib/moon.mod.json":  `{"name": "acme/lib", "version": "0.1.0", "deps": {"moonbitlang/core": "0.4.8"}}`,
		"ws/tool/moon.mod":      `name = "acme/tool" options(deps: { "acme/app": "0.0.1" })`,
		"ws/tool/moon.mod.json": `{"name": "acme/tool", "deps": {"acme/lib": {"path": "../lib"}, "only/json": "1.0.0"}}`,

		// moon.work wins over the module manifest beside it; "." is a member.
		"wsroot/moon.work":       `members = [".", "./lib"]`,
		"wsroot/moon.mod":        `name = "acme/root" import { "acme/rlib@1.0.0", "b/ext@2.0.0" }`,
		"wsroot/lib/moon.mod":    `name = "acme/rlib"`,
		"wsroot/other/moon.mod":  `name = "acme/unlisted"`,
		"gone/moon.work":         `members = ["./here", "./missing"]`,
		"gone/here/moon.mod":     `name = "acme/here"`,
		"bare/moon.work":         `members = ["./empty"]`,
		"bare/empty/README.md":   "no manifest here",
		"badws/moon.work":        `members = "app"`,
		"badmember/moon.work":    `members = ["m"]`,
		"badmember/m/moon.mod":   `name = ""`,
		"bad/moon.mod":           `name = foo`,
		"nomanifest/README.md":   "nothing",
		"other/moon.pkg":         "",
		"other/moon.mod.json.bk": `{"name": "a/b"}`,
	})
	ws := filepath.Join(root, "ws")
	wsWant := []manifest.Require{
		{From: "app/moon.mod", Module: "acme/lib", Dep: manifest.Dep{Path: filepath.Join(ws, "lib")}},
		req("app/moon.mod", "moonbitlang/x", "0.4.6"),
		// A path to a module outside the workspace stays as written.
		{From: "ext/moon.mod.json", Module: "acme/far", Dep: manifest.Dep{Path: "../../far"}},
		{From: "ext/moon.mod.json", Module: "acme/lib", Dep: manifest.Dep{Path: filepath.Join(ws, "lib")}},
		req("lib/moon.mod.json", "moonbitlang/core", "0.4.8"),
		{From: "tool/moon.mod", Module: "acme/app", Dep: manifest.Dep{Path: filepath.Join(ws, "app")}},
	}
	wsroot := filepath.Join(root, "wsroot")
	for _, tc := range []struct {
		name string
		path string // relative to root
		want []manifest.Require
		// for errors
		notExist, invalid bool
		msg               string
	}{
		{name: "moon.mod path", path: "single/moon.mod",
			want: []manifest.Require{req("moon.mod", "a/first", "0.2.0"), req("moon.mod", "z/last", "1.0.0")}},
		{name: "moon.mod.json path: path and git deps as written", path: "json/moon.mod.json", want: []manifest.Require{
			{From: "moon.mod.json", Module: "g/git", Dep: manifest.Dep{Git: "https://example.org/g.git"}},
			{From: "moon.mod.json", Module: "p/local", Dep: manifest.Dep{Path: "../local"}},
			req("moon.mod.json", "r/reg", "1.0.0"),
		}},
		{name: "module directory", path: "single",
			want: []manifest.Require{req("moon.mod", "a/first", "0.2.0"), req("moon.mod", "z/last", "1.0.0")}},
		{name: "directory with moon.mod.json only", path: "ws/lib",
			want: []manifest.Require{req("moon.mod.json", "moonbitlang/core", "0.4.8")}},
		{name: "directory with both: moon.mod wins", path: "both",
			want: []manifest.Require{req("moon.mod", "from/dsl", "1.0.0")}},
		{name: "moon.mod.json path beside a moon.mod is read as asked", path: "both/moon.mod.json",
			want: []manifest.Require{req("moon.mod.json", "from/json", "1.0.0")}},
		{name: "no deps", path: "nodeps", want: nil},
		{name: "workspace directory", path: "ws", want: wsWant},
		{name: "moon.work path", path: "ws/moon.work", want: wsWant},
		{name: "moon.work beside moon.mod wins", path: "wsroot", want: []manifest.Require{
			{From: "moon.mod", Module: "acme/rlib", Dep: manifest.Dep{Path: filepath.Join(wsroot, "lib")}},
			req("moon.mod", "b/ext", "2.0.0"),
		}},
		{name: "a member's moon.mod path is read alone", path: "wsroot/moon.mod", want: []manifest.Require{
			req("moon.mod", "acme/rlib", "1.0.0"), req("moon.mod", "b/ext", "2.0.0"),
		}},

		{name: "missing path", path: "nowhere", notExist: true},
		{name: "missing member", path: "gone", notExist: true, msg: "missing"},
		{name: "member without a manifest", path: "bare", notExist: true, msg: "empty"},
		{name: "directory without a manifest", path: "nomanifest", notExist: true},
		{name: "invalid moon.work", path: "badws", invalid: true, msg: "moon.work"},
		{name: "invalid member", path: "badmember", invalid: true, msg: "must not be empty"},
		{name: "invalid moon.mod", path: "bad/moon.mod", invalid: true, msg: "moon.mod:1:8"},
		{name: "a file with another name", path: "other/moon.pkg", msg: "want a moon.mod, moon.mod.json or moon.work"},
		{name: "a file with a similar name", path: "other/moon.mod.json.bk", msg: "want a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := manifest.ReadProject(filepath.Join(root, filepath.FromSlash(tc.path)))
			if tc.notExist || tc.invalid || tc.msg != "" {
				switch {
				case err == nil:
					t.Fatalf("no error; got %+v", got)
				case tc.notExist && !errors.Is(err, fs.ErrNotExist):
					t.Errorf("errors.Is(%v, fs.ErrNotExist) = false", err)
				case tc.invalid && !errors.Is(err, manifest.ErrInvalid):
					t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
				case !strings.Contains(err.Error(), tc.msg):
					t.Errorf("error %q does not contain %q", err, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadProject: %v", err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got\n  %+v\nwant\n  %+v", got, tc.want)
			}
		})
	}
}
