package manifest_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"moonbit-registry/manifest"
)

// deps builds a Deps map from "owner/module@version" specs, split at the
// last '@' as moon.mod's import does.
func deps(specs ...string) map[string]manifest.Dep {
	out := map[string]manifest.Dep{}
	for _, s := range specs {
		i := strings.LastIndexByte(s, '@')
		out[s[:i]] = manifest.Dep{Version: s[i+1:]}
	}
	return out
}

// raw is a supported-targets value as the parser keeps it: compact JSON.
func raw(s string) json.RawMessage { return json.RawMessage(s) }

// crlf turns a file's line endings into Windows ones.
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// showModule prints a Module with SupportedTargets as text, not bytes.
func showModule(m manifest.Module) string {
	st := m.SupportedTargets
	m.SupportedTargets = nil
	return fmt.Sprintf("%+v SupportedTargets:%s", m, st)
}

// checkModule compares every field, nil and empty apart (Keywords is nil
// only when absent).
func checkModule(t *testing.T, got, want manifest.Module) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %s\nwant %s", showModule(got), showModule(want))
	}
}

// parseDSL calls ParseDSL, turning a panic into a test failure so that one
// bad input does not stop the whole table.
func parseDSL(t *testing.T, src string) (m manifest.Module, err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("ParseDSL(%q) panicked: %v", src, r)
		}
	}()
	return manifest.ParseDSL([]byte(src))
}

// checkErr asserts that err says the manifest is invalid, that its text
// holds msg, and, when line is not 0, that it is a *SyntaxError of file
// at exactly line:col.
func checkErr(t *testing.T, err error, file, msg string, line, col int) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one containing %q", msg)
	}
	if !errors.Is(err, manifest.ErrInvalid) {
		t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Errorf("error %q does not contain %q", err, msg)
	}
	if line == 0 {
		return
	}
	var se *manifest.SyntaxError
	if !errors.As(err, &se) {
		t.Fatalf("error %q (%T) is not a *SyntaxError", err, err)
	}
	if se.Pos != (manifest.Pos{Line: line, Col: col}) || se.File != file {
		t.Errorf("error at %s:%s; want %s:%d:%d (%v)", se.File, se.Pos, file, line, col, err)
	}
}

type dslForm struct {
	name string
	src  string
	want manifest.Module
}

// dslForms are valid moon.mod files, one per form the spec catalogues
// (§8 a–h, the representative examples, §3.3, §6, §9) and per rule of
// §3 that changes the result. FuzzParseDSL seeds from them too.
var dslForms = []dslForm{
	// (a) key = "string", with and without spaces.
	{"minimal, name without owner", `name = "core_builder"`,
		manifest.Module{Name: "core_builder"}},
	{"no spaces", "name=\"solo/tight\"\nversion=\"0.0.1\"\noptions(readme:\"README.md\")",
		manifest.Module{Name: "solo/tight", Version: "0.0.1", Readme: "README.md"}},
	// (h) blank lines between statements, and none.
	{"blank line between", "name = \"test/file-lock\"\n\nversion = \"0.1.0\"\n",
		manifest.Module{Name: "test/file-lock", Version: "0.1.0"}},
	{"consecutive metadata lines", `name = "acme/top"
version = "2.0.0"
readme = "README.md"
repository = "https://example.org/acme/top"
license = "MIT"
keywords = ["parser", "dsl"]
description = "Top-level metadata"
preferred_target = "js"
supported_targets = "js"
`, manifest.Module{Name: "acme/top", Version: "2.0.0", Readme: "README.md",
		Repository: "https://example.org/acme/top", License: "MIT",
		Keywords: []string{"parser", "dsl"}, Description: "Top-level metadata",
		PreferredTarget: "js", SupportedTargets: raw(`"js"`)}},
	{"empty strings", "name = \"acme/docs\"\nrepository = \"\"\nlicense = \"\"\ndescription = \"\"",
		manifest.Module{Name: "acme/docs"}},
	// (b) arrays.
	{"empty array", "name = \"a/b\"\nkeywords = []", manifest.Module{Name: "a/b", Keywords: []string{}}},
	{"empty array with a space", "name = \"a/b\"\nkeywords = [ ]", manifest.Module{Name: "a/b", Keywords: []string{}}},
	{"string array", "name = \"a/b\"\nkeywords = [\"x\", \"y\"]", manifest.Module{Name: "a/b", Keywords: []string{"x", "y"}}},
	{"string array, padded, trailing comma", "name = \"a/b\"\nkeywords = [ \"x\", \"y\", ]",
		manifest.Module{Name: "a/b", Keywords: []string{"x", "y"}}},
	{"multi-line array", "name = \"a/b\"\nkeywords = [\n  \"x\",\n  \"y\",\n]",
		manifest.Module{Name: "a/b", Keywords: []string{"x", "y"}}},
	// (c) import blocks.
	{"import on one line, no space before {", "name = \"a/b\"\nimport{\"dep/one@0.1.0\"}",
		manifest.Module{Name: "a/b", Deps: deps("dep/one@0.1.0")}},
	{"import with spaces, trailing comma", `name = "a/b" import { "dep/one@0.1.0", }`,
		manifest.Module{Name: "a/b", Deps: deps("dep/one@0.1.0")}},
	{"import multi-line, trailing comma", "name = \"a/b\"\nimport {\n  \"moonbitlang/async@0.20.2\",\n}\n",
		manifest.Module{Name: "a/b", Deps: deps("moonbitlang/async@0.20.2")}},
	{"import multi-line, no trailing comma", "name = \"a/b\"\nimport {\n  \"p/one@0.1.2\",\n  \"p/two@0.4.8\",\n  \"p/three@0.4.6\"\n}",
		manifest.Module{Name: "a/b", Deps: deps("p/one@0.1.2", "p/two@0.4.8", "p/three@0.4.6")}},
	{"import with comment lines and trailing comments", `name = "acme/app"
import {
  // the runtime
  "moonbitlang/async@0.20.2", // pinned
  // "acme/old@1.0.0",
  "moonbitlang/x@0.4.6", // utilities
  // last
}
`, manifest.Module{Name: "acme/app", Deps: deps("moonbitlang/async@0.20.2", "moonbitlang/x@0.4.6")}},
	{"empty import", "name = \"a/b\"\nimport {}", manifest.Module{Name: "a/b"}},
	{"import splits at the last @, prerelease and build kept", `name = "a/b" import { "odd@name/m@1.0.0-rc.1+b7" }`,
		manifest.Module{Name: "a/b", Deps: map[string]manifest.Dep{"odd@name/m": {Version: "1.0.0-rc.1+b7"}}}},
	{"import twice the same module: the last version wins", `name = "a/b" import { "x/y@1.0.0", "x/y@1.1.0" }`,
		manifest.Module{Name: "a/b", Deps: deps("x/y@1.1.0")}},
	// (d) options(...): bare and quoted labels, trailing comma or not.
	{"import and options on one line each, mixed labels", `name = "a/b"
import{"example/dep@0.1.0"}
options(readme:"README.md","supported-targets":["wasm-gc","js"])`,
		manifest.Module{Name: "a/b", Deps: deps("example/dep@0.1.0"), Readme: "README.md",
			SupportedTargets: raw(`["wasm-gc","js"]`)}},
	{"options multi-line source", "name = \"a/b\"\noptions(\n  source: \".\",\n)\n",
		manifest.Module{Name: "a/b", Source: "."}},
	{"top-level source", "name = \"a/b\"\nsource = \"src\"", manifest.Module{Name: "a/b", Source: "src"}},
	{"empty options", "name = \"a/b\"\noptions()", manifest.Module{Name: "a/b"}},
	{"options give every field", `options(
  name: "a/b",
  version: "1.0.0",
  readme: "R.md",
  repository: "https://example.org/r",
  license: "Apache-2.0",
  keywords: ["k"],
  description: "via options",
  "source": "lib",
  preferred_target: "native",
  supported_targets: "+all-wasm",
)`, manifest.Module{Name: "a/b", Version: "1.0.0", Readme: "R.md", Repository: "https://example.org/r",
		License: "Apache-2.0", Keywords: []string{"k"}, Description: "via options", Source: "lib",
		PreferredTarget: "native", SupportedTargets: raw(`"+all-wasm"`)}},
	// (e) nested objects with quoted keys, object-valued arrays, and the
	// values that only moon.pkg uses (booleans, ints): accepted, ignored.
	{"options with nested objects", `name = "acme/full"
version = "0.2.0"
import {
  "p/cli@0.1.2",
  "p/core@0.4.8",
  "p/x@0.4.6",
}
options(
  "bin-deps": {
    "tool/cli": { "path": "../bin", "bin-pkg": ["cli"] },
  },
  "compile-flags": ["-DDEBUG", "-Wall"],
  warnings: "-unused",
  "warn-list": "-deprecated",
  "preferred-target": "wasm-gc",
  "scripts": {
    "prebuild": "node ./prebuild.js",
    "postbuild": "echo done",
  },
  "include": [{ "glob": "src/**" }, "README.md"],
  "flag": true, "off": false, "level": 2147483647, "low": -2147483648, "zero": 007,
)
`, manifest.Module{Name: "acme/full", Version: "0.2.0", Deps: deps("p/cli@0.1.2", "p/core@0.4.8", "p/x@0.4.6"),
		PreferredTarget: "wasm-gc"}},
	{"options deps merge with import", `name = "a/b"
import { "x/y@1.0.0" }
options(deps: { "c/d": "2.0.0", "e/f": { "version": "3.0.0" } })`,
		manifest.Module{Name: "a/b", Deps: deps("x/y@1.0.0", "c/d@2.0.0", "e/f@3.0.0")}},
	{"import overrides an options dep", `name = "a/b"
import { "x/y@1.0.0" }
options(deps: { "x/y": "0.9.0" })`,
		manifest.Module{Name: "a/b", Deps: deps("x/y@1.0.0")}},
	{"a repeated label keeps the last value", `name = "a/b" options(readme: "one.md", readme: "two.md")`,
		manifest.Module{Name: "a/b", Readme: "two.md"}},
	{"a repeated object key keeps the last value", `name = "a/b" options(deps: { "x/y": "1.0.0", "x/y": "2.0.0" })`,
		manifest.Module{Name: "a/b", Deps: deps("x/y@2.0.0")}},
	{"options root-dir", `name = "a/b" options("root-dir": "lib")`, manifest.Module{Name: "a/b", Source: "lib"}},
	{"source wins over root-dir", `name = "a/b" options("root-dir": "lib", source: "src")`,
		manifest.Module{Name: "a/b", Source: "src"}},
	{"top-level preferred_target overwrites options preferred-target", `name = "a/b"
preferred_target = "js"
options("preferred-target": "wasm")`, manifest.Module{Name: "a/b", PreferredTarget: "js"}},
	{"supported_targets wins over supported-targets", `name = "a/b"
supported_targets = "js"
options("supported-targets": ["wasm"])`, manifest.Module{Name: "a/b", SupportedTargets: raw(`"js"`)}},
	{"supported_targets list, padded", "name = \"a/b\"\nsupported_targets = [ \"wasm-gc\", \"js\" ]",
		manifest.Module{Name: "a/b", SupportedTargets: raw(`["wasm-gc","js"]`)}},
	{"supported_targets expression", `name = "a/b" supported_targets = " all - js + wasm-gc "`,
		manifest.Module{Name: "a/b", SupportedTargets: raw(`" all - js + wasm-gc "`)}},
	{"options = string is ignored", `name = "a/b" options = "x"`, manifest.Module{Name: "a/b"}},
	// moon takes options out of the keys before it merges the labels in.
	{"an options label options is not a repeat", `name = "a/b" options(options: 1)`, manifest.Module{Name: "a/b"}},
	// (f) repeated rules, multi-line and single-line; rule = {...} too.
	{"repeated rules", `name = "acme/gen"
rule(
  name: "main_source",
  command: "cat $input >/dev/null && echo 'fn main {}' > $output",
)
rule(name: "second", command: "exe2")
rule = { "name": "third", "command": "exe3", "extra": 1 }
`, manifest.Module{Name: "acme/gen"}},
	// (g) comments.
	{"comments everywhere", `// leading comment
name = "a/b" // trailing
// between
version = "1.0.0"//no space
options( // after the paren
  readme: "R.md", // after a label
) // after the call
// at the end, without a newline`, manifest.Module{Name: "a/b", Version: "1.0.0", Readme: "R.md"}},
	{"a comment marker inside a string is text", `name = "a/b" description = "see http://x // y"`,
		manifest.Module{Name: "a/b", Description: "see http://x // y"}},
	// Newlines are not significant: several statements on a line, or ';'.
	{"statements on one line", `name="a/b" version="1.0.0" license="MIT" keywords=["k"]`,
		manifest.Module{Name: "a/b", Version: "1.0.0", License: "MIT", Keywords: []string{"k"}}},
	{"semicolons", "name = \"a/b\"; version = \"1.0.0\";\nlicense = \"MIT\";",
		manifest.Module{Name: "a/b", Version: "1.0.0", License: "MIT"}},
	{"a statement split over lines", "name\n=\n\"a/b\"\noptions\n(\nreadme\n:\n\"R\"\n)",
		manifest.Module{Name: "a/b", Readme: "R"}},
	{"tabs and form feeds", "name\t=\t\"a/b\"\f", manifest.Module{Name: "a/b"}},
	{"CRLF line endings", crlf(`// windows
name = "acme/win"
version = "1.2.3"
import {
  "x/y@1.0.0", // dep
}
`), manifest.Module{Name: "acme/win", Version: "1.2.3", Deps: deps("x/y@1.0.0")}},
	// Strings: JSON's escapes; raw newlines and UTF-8 are kept.
	{"escapes", `name = "a/b" description = "t\tq\"s\/b\\n\n\r\f\b \u00e9\u4E2D"`,
		manifest.Module{Name: "a/b", Description: "t\tq\"s/b\\n\n\r\f\b é中"}},
	{"raw newline and UTF-8 in a string", "name = \"a/b\"\ndescription = \"line one\nline two 日本\"",
		manifest.Module{Name: "a/b", Description: "line one\nline two 日本"}},
	{"deep but within the limit", `name = "a/b" options(x: ` + strings.Repeat("[", 64) + strings.Repeat("]", 64) + `)`,
		manifest.Module{Name: "a/b"}},
	// Whole files.
	{"moon new template (§6)", `// Learn more about moon.mod configuration:
// https://docs.moonbitlang.com/en/latest/toolchain/moon/module.html
//
// To add a dependency, run this command in your terminal:
//   moon add moonbitlang/x
//
// Or manually declare it in ` + "`import`" + `, for example:
// import {
//   "moonbitlang/x@0.4.6",
// }

name = "someone/hello"

version = "0.1.0"

readme = "README.mbt.md"

repository = ""

license = "Apache-2.0"

keywords = []

preferred_target = "wasm"

description = ""
`, manifest.Module{Name: "someone/hello", Version: "0.1.0", Readme: "README.mbt.md",
		License: "Apache-2.0", Keywords: []string{}, PreferredTarget: "wasm"}},
	{"moonfmt canonical form (§3.3)", `name = "acme/canon"

version = "0.3.0"

import {
  "acme/base@1.2.3",
}

readme = "README.md"

license = "MIT"

warnings = "+w1-w2"

supported_targets = [ "wasm-gc", "js" ]

options(
  "include": [ "src/**", "README.md" ],
)
`, manifest.Module{Name: "acme/canon", Version: "0.3.0", Deps: deps("acme/base@1.2.3"),
		Readme: "README.md", License: "MIT", SupportedTargets: raw(`["wasm-gc","js"]`)}},
	{"registry test archive (§9)", "name = \"test/module\"\nversion = \"1.2.3\"\n",
		manifest.Module{Name: "test/module", Version: "1.2.3"}},
	{"test registry with scripts (§9)", "name = \"test/scripted\"\nversion = \"0.0.2\"\noptions(\n  \"scripts\": {\n    \"postadd\": \"must-not-run\",\n  },\n)\n",
		manifest.Module{Name: "test/scripted", Version: "0.0.2"}},
	{"long-path test string (§8.18)", "name = \"test/long-path\"\npreferred_target = \"wasm-gc\"\n",
		manifest.Module{Name: "test/long-path", PreferredTarget: "wasm-gc"}},
}

func TestParseDSLForms(t *testing.T) {
	for _, tc := range dslForms {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseDSL(t, tc.src)
			if err != nil {
				t.Fatalf("ParseDSL: %v", err)
			}
			checkModule(t, got, tc.want)
		})
	}
}

// TestParseDSLSameAsJSON reads modules written both ways: the two readers
// must agree on every field.
func TestParseDSLSameAsJSON(t *testing.T) {
	for _, tc := range []struct{ name, dsl, json string }{
		{"minimal", `name = "a/b"`, `{"name": "a/b"}`},
		{"template", `name = "someone/hello"
version = "0.1.0"
readme = "README.mbt.md"
repository = ""
license = "Apache-2.0"
keywords = []
preferred_target = "wasm"
description = ""`, `{
  "name": "someone/hello",
  "version": "0.1.0",
  "readme": "README.mbt.md",
  "repository": "",
  "license": "Apache-2.0",
  "keywords": [],
  "preferred-target": "wasm",
  "description": ""
}`},
		{"deps and targets list", `name = "acme/app"
version = "1.0.0-beta.2"
import {
  "moonbitlang/x@0.4.6",
  "acme/util@2.1.0",
}
keywords = ["cli", "tool"]
supported_targets = [ "wasm-gc", "js" ]
source = "src"`, `{
  "name": "acme/app",
  "version": "1.0.0-beta.2",
  "deps": {"moonbitlang/x": "0.4.6", "acme/util": {"version": "2.1.0"}},
  "keywords": ["cli", "tool"],
  "supported-targets": [ "wasm-gc", "js" ],
  "source": "src"
}`},
		{"options spellings", `options(
  name: "acme/opt",
  "root-dir": "lib",
  "preferred-target": "llvm",
  "supported-targets": "+all-wasm",
  deps: { "x/y": "1.0.0" },
  "warn-list": "-w",
)`, `{"name": "acme/opt", "root-dir": "lib", "preferred-target": "llvm",
  "supported-targets": "+all-wasm", "deps": {"x/y": "1.0.0"}, "warn-list": "-w"}`},
		{"escapes", `name = "a/b" description = "tab\there \u00e9 \"q\""`,
			`{"name": "a/b", "description": "tab\there \u00e9 \"q\""}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fromDSL, err := parseDSL(t, tc.dsl)
			if err != nil {
				t.Fatalf("ParseDSL: %v", err)
			}
			fromJSON, err := manifest.ParseJSON([]byte(tc.json))
			if err != nil {
				t.Fatalf("ParseJSON: %v", err)
			}
			checkModule(t, fromDSL, fromJSON)
		})
	}
}

type dslError struct {
	name, src string
	msg       string // a part of the error's text
	line, col int    // where, for a *SyntaxError; 0 when it is not one
}

// dslErrors are invalid moon.mod files: the spec's error catalogue (§4)
// and the lexing and parsing errors of §1-2. FuzzParseDSL seeds from them.
var dslErrors = []dslError{
	// §3 step 1: top-level keys.
	{"unknown key", "name = \"a/b\"\nauthor = \"me\"", `unexpected key "author" in moon.mod`, 2, 1},
	{"unknown call", "name = \"a/b\"\nbuild(x: 1)", `unexpected key "build"`, 2, 1},
	{"deps at top level", "name = \"a/b\"\ndeps = {}", `unexpected key "deps"`, 2, 1},
	{"import for test", "name = \"a/b\"\nimport { \"x/y@1.0.0\" } for \"test\"", `unexpected key "test-import"`, 2, 1},
	{"legacy import wbtest", "name = \"a/b\"\nimport \"wbtest\" {}", `unexpected key "wbtest-import"`, 2, 1},
	{"duplicate key", "name = \"a/b\"\nversion = \"1.0.0\"\nversion = \"1.0.1\"", `"version" is given twice (first at 2:1)`, 3, 1},
	{"two import blocks", "name = \"a/b\"\nimport {}\nimport {}", `"import" is given twice (first at 2:1)`, 3, 1},
	{"two options", "name = \"a/b\"\noptions()\noptions()", `"options" is given twice (first at 2:1)`, 3, 1},
	// §3 step 2: an options label that is already a key.
	{"options label repeats a key", "name = \"a/b\"\nreadme = \"R.md\"\noptions(readme: \"S.md\")", `"readme" is given twice (first at 2:1)`, 3, 9},
	{"options name repeats name", `name = "a/b" options("name": "c/d")`, `"name" is given twice (first at 1:1)`, 1, 22},
	{"options import repeats import", "import {}\noptions(\"import\": [])", `"import" is given twice`, 2, 9},
	// moon collects rule(...) statements under the key "rule" before it
	// merges options, so an options "rule" is a duplicate there.
	{"options rule repeats rule statements", "name = \"a/b\"\nrule(name: \"r1\", command: \"c1\")\noptions(\"rule\": [{ \"name\": \"r2\", \"command\": \"c2\" }])",
		`"rule" is given twice`, 3, 9},
	// §3 step 4: rules.
	{"rule without command", "name = \"a/b\"\nrule(name: \"r1\")", "a rule needs a string name and a string command", 2, 1},
	{"rule with a number name", "name = \"a/b\"\nrule(name: 1, command: \"c\")", "a rule needs a string name and a string command", 2, 1},
	{"duplicate rule name", "name = \"a/b\"\nrule(name: \"r\", command: \"x\")\nrule(name: \"r\", command: \"y\")", `rule "r" is given twice`, 3, 1},
	{"rule not a call", "name = \"a/b\"\nrule = \"make\"", "a rule must be", 2, 1},
	{"options rule not a list", "name = \"a/b\"\noptions(\"rule\": \"make\")", `"rule" must be a list`, 2, 9},
	// §3 step 6: imports.
	{"aliased import", "name = \"a/b\"\nimport {\n  \"x/y@1.2.3\" @dep,\n}", `"x/y@1.2.3"@dep: aliases are not supported`, 3, 15},
	{"aliased import with as", `name = "a/b" import { "x/y@1.2.3" as @dep }`, `"x/y@1.2.3"@dep: aliases are not supported`, 1, 38},
	{"as without an alias", `name = "a/b" import { "x/y@1.2.3" as }`, "unexpected `}`; expected an alias", 1, 38},
	{"import without version", "name = \"a/b\"\nimport {\n  \"example/no-version\",\n}", `import "example/no-version": moon.mod imports only versioned registry modules`, 2, 1},
	{"import x@", "name = \"a/b\"\nimport { \"x@\" }", `import "x@"`, 2, 1},
	{"import @1.0.0", "name = \"a/b\"\nimport { \"@1.0.0\" }", `import "@1.0.0"`, 2, 1},
	{"import with a range", "name = \"a/b\"\nimport { \"x/y@^1.0\" }", `dependency "x/y": "^1.0" is not a semantic version`, 2, 1},
	{"import item not a string", "name = \"a/b\"\nimport { x }", "unexpected `x`; expected a quoted import", 2, 10},
	{"import of another kind", "name = \"a/b\"\nimport \"other\" {}", `unexpected "other"; expected "test" or "wbtest"`, 2, 8},
	{"for after a legacy import", "name = \"a/b\"\nimport \"test\" {} for \"test\"", "unexpected `for`; expected a key", 2, 18},
	// options("import": ...) reaches the import lowering with items the
	// import statement cannot produce: any wording, but an error at the
	// label.
	{"options import with a number", "name = \"a/b\"\noptions(\"import\": [1])", "", 2, 9},
	{"options import with an object", "name = \"a/b\"\noptions(\"import\": [{ \"path\": \"x/y@1.0.0\" }])", "", 2, 9},
	// §3 step 8: only versioned registry deps.
	{"local dep", "name = \"a/b\"\noptions(\n  deps: {\n    \"example/local\": { \"path\": \"../local\" },\n  },\n)",
		`local dependency "example/local"`, 4, 5},
	{"local dep with a version", "name = \"a/b\"\noptions(deps: { \"l/p\": { \"path\": \"../p\", \"version\": \"1.0.0\" } })", `local dependency "l/p"`, 2, 17},
	{"git dep", "name = \"a/b\"\noptions(deps: { \"g/h\": { \"git\": \"https://example.org/g/h.git\", \"branch\": \"main\" } })", `git dependency "g/h"`, 2, 17},
	{"dep object without version", "name = \"a/b\"\noptions(deps: { \"r/s\": {} })", `dependency "r/s" has no version`, 2, 17},
	{"dep with a range", "name = \"a/b\"\noptions(deps: { \"r/s\": \"^1.0.0\" })", `dependency "r/s": "^1.0.0" is not a semantic version`, 2, 17},
	{"deps not an object", "name = \"a/b\"\noptions(deps: [\"x/y@1.0.0\"])", `"deps" must be an object`, 2, 9},
	{"dep a number", "name = \"a/b\"\noptions(deps: { \"x/y\": 1 })", `moon.mod:2:9: "deps": dependency "x/y": neither a version string nor an object`, 0, 0},
	{"dep version a number", "name = \"a/b\"\noptions(deps: { \"x/y\": { \"version\": 1 } })", `dependency "x/y": a number where a string is expected`, 0, 0},
	// §3 step 7: types.
	{"keywords a string", "name = \"a/b\"\nkeywords = \"moon\"", `moon.mod:2:1: "keywords": a string where a list is expected`, 0, 0},
	{"keywords of numbers", "name = \"a/b\"\nkeywords = [1]", `"keywords": a number where a string is expected`, 0, 0},
	{"name a number", "name = 1", `moon.mod:1:1: "name": a number where a string is expected`, 0, 0},
	{"description a bool", "name = \"a/b\"\ndescription = true", `"description": a bool where a string is expected`, 0, 0},
	{"name a call", `name(first: "a")`, `"name": an object where a string is expected`, 0, 0},
	// §3 steps 9-10: values.
	{"empty name", `name = ""`, `moon.mod:1:1: "name": must not be empty`, 0, 0},
	{"missing name", `version = "1.0.0"`, `moon.mod has no "name"`, 0, 0},
	{"empty file", "", `moon.mod has no "name"`, 0, 0},
	{"only comments", "// nothing here\n", `moon.mod has no "name"`, 0, 0},
	{"bad version", "name = \"a/b\"\nversion = \"1.0\"", `moon.mod:2:1: "version": "1.0" is not a semantic version`, 0, 0},
	{"version with v", "name = \"a/b\"\nversion = \"v1.0.0\"", `"version": "v1.0.0" is not a semantic version`, 0, 0},
	{"empty version", "name = \"a/b\"\nversion = \"\"", `"version": "" is not a semantic version`, 0, 0},
	{"bad preferred target", "name = \"a/b\"\npreferred_target = \"wasm64\"", `moon.mod:2:1: "preferred-target": "wasm64" is not a backend`, 0, 0},
	{"bad preferred-target label", "name = \"a/b\"\noptions(\"preferred-target\": \"jvm\")", `moon.mod:2:9: "preferred-target": "jvm" is not a backend`, 0, 0},
	// moon refuses "" as it refuses any name that is not a backend.
	{"empty preferred target", "name = \"a/b\"\npreferred_target = \"\"", `"preferred-target": "" is not a backend`, 0, 0},
	{"supported targets without operator", "name = \"a/b\"\nsupported_targets = \"js wasm\"", `moon.mod:2:1: "supported-targets": expression "js wasm": expected`, 0, 0},
	{"supported targets empty", "name = \"a/b\"\nsupported_targets = \" \"", "the expression is empty", 0, 0},
	{"supported targets unknown", "name = \"a/b\"\nsupported_targets = \"+wasm32\"", `unknown backend at "wasm32"`, 0, 0},
	{"supported targets trailing operator", "name = \"a/b\"\nsupported_targets = \"js+\"", "unknown backend", 0, 0},
	{"supported targets list", "name = \"a/b\"\nsupported_targets = [\"js\", \"jvm\"]", `"jvm" is not a backend`, 0, 0},
	{"supported targets a number", "name = \"a/b\"\nsupported_targets = 1", "must be a string expression", 0, 0},
	{"source with a colon", "name = \"a/b\"\nsource = \"src:main\"", `moon.mod:2:1: "source": must not contain ':'`, 0, 0},
	{"source with a pipe", "name = \"a/b\"\nsource = \"a|b\"", `"source": must not contain '|'`, 0, 0},
	{"source absolute", "name = \"a/b\"\nsource = \"/abs\"", `"source": must be a subdirectory`, 0, 0},
	{"source with a backslash", "name = \"a/b\"\nsource = \"\\\\win\"", `"source": must be a subdirectory`, 0, 0},
	{"root-dir absolute", "name = \"a/b\"\noptions(\"root-dir\": \"/x\")", "must be a subdirectory", 0, 0},
	// §1: lexing errors.
	{"unknown escape", `name = "a\x"`, "unknown escape `\\x`", 1, 10},
	{"escaped newline", "name = \"a\\\nb\"", "unknown escape", 1, 10},
	{"bad \\u", `name = "\u12G4"`, "`\\u12G4` is not a Unicode scalar value", 1, 9},
	{"surrogate \\u", `name = "\uD800"`, "`\\uD800` is not a Unicode scalar value", 1, 9},
	{"short \\u at the end", `name = "\u12"`, "`\\u` needs four hex digits", 1, 9},
	{"backslash at the end", `name = "a\`, "string is not closed", 1, 8},
	{"unterminated string", `name = "a/b`, "string is not closed", 1, 8},
	{"unterminated string on line 2", "name = \"a/b\"\nversion = \"1.0", "string is not closed", 2, 11},
	{"lone CR", "name = \"a/b\"\rversion = \"1.0.0\"", "carriage return", 1, 13},
	{"lone CR after a comment", "// note\rname = \"a/b\"", "carriage return", 1, 8},
	{"block comment", "/* old */\nname = \"a/b\"", "unexpected character '/'", 1, 1},
	{"single slash", `name = "a/b" / x`, "unexpected character '/'", 1, 14},
	{"int beyond int32", "name = \"a/b\"\noptions(n: 2147483648)", "integer 2147483648 is out of range", 2, 12},
	{"int below int32", "name = \"a/b\"\noptions(n: -2147483649)", "integer -2147483649 is out of range", 2, 12},
	{"huge int", "name = \"a/b\"\noptions(n: 99999999999)", "out of range", 2, 12},
	{"minus without digits", "name = \"a/b\"\noptions(n: -x)", "`-` is not followed by a digit", 2, 12},
	{"hash", `name = "a/b" # comment`, "unexpected character '#'", 1, 14},
	{"single quotes", `name = 'a/b'`, "unexpected character", 1, 8},
	{"float", "name = \"a/b\"\nversion = 1.0", "unexpected character '.'", 2, 12},
	// Columns count bytes: é is two.
	{"non-ASCII outside a string", `name = "é/b" é`, "unexpected character 'é'", 1, 15},
	{"invalid UTF-8", "name = \"a/b\" \xff", "unexpected character", 1, 14},
	{"@ without a name", `name = "a/b" import { "x/y@1.0.0" @ }`, "`@` is not followed by a package name", 1, 35},
	{"a lexing error beats an earlier parse error", "name = foo\n#", "unexpected character '#'", 2, 1},
	// §2: parse errors.
	{"bare word value", "name = foo", "unexpected `foo`; expected a value", 1, 8},
	{"lone comma in array", "name = \"a/b\"\nkeywords = [,]", "unexpected `,`", 2, 13},
	{"double comma in array", "name = \"a/b\"\nkeywords = [\"a\",,]", "unexpected `,`", 2, 17},
	{"missing comma between labels", "name = \"a/b\"\noptions(a: 1 b: 2)", "unexpected `b`; expected `,` or `)`", 2, 14},
	{"keyword as label", "name = \"a/b\"\noptions(import: 1)", "unexpected `import`; expected a label", 2, 9},
	{"keyword as key", "true = 1", "unexpected `true`; expected a key", 1, 1},
	{"string as key", `"name" = "a/b"`, "expected a key", 1, 1},
	{"import assigned", `import = "x"`, "unexpected `=`; expected `{`", 1, 8},
	{"key without = or (", `name "a/b"`, "expected `=` or `(` after `name`", 1, 6},
	{"key at the end", "name = \"a/b\"\nversion", "unexpected end of file; expected `=` or `(`", 2, 8},
	{"two semicolons", `name = "a/b";;`, "unexpected `;`", 1, 14},
	{"unquoted object key", "name = \"a/b\"\noptions(deps: { a: \"1.0.0\" })", "unexpected `a`; expected a quoted key", 2, 17},
	{"object without colon", "name = \"a/b\"\noptions(deps: { \"a\" \"1.0.0\" })", "expected `:`", 2, 21},
	{"unclosed import", "name = \"a/b\"\nimport {", "unexpected end of file", 2, 9},
	{"unclosed options", "name = \"a/b\"\noptions(\n", "unexpected end of file", 3, 1},
	{"nested too deep", "name = \"a/b\"\nkeywords = " + strings.Repeat("[", 100) + strings.Repeat("]", 100),
		"nested deeper than 64 levels", 2, 77},
	{"objects nested too deep", "name = \"a/b\"\noptions(x: " + strings.Repeat(`{"k":`, 100) + "1" + strings.Repeat("}", 100) + ")",
		"nested deeper than 64 levels", 2, 332},
	{"larger than 64 KiB", "name = \"a/b\"\n" + strings.Repeat(" ", 64<<10), "larger than 64 KiB", 1, 1},
}

func TestParseDSLErrors(t *testing.T) {
	for _, tc := range dslErrors {
		t.Run(tc.name, func(t *testing.T) {
			m, err := parseDSL(t, tc.src)
			if err == nil {
				t.Fatalf("no error; got %s", showModule(m))
			}
			checkErr(t, err, manifest.DSLFile, tc.msg, tc.line, tc.col)
		})
	}
}

type workCase struct {
	name, src string
	want      manifest.Work
	// for errors
	msg       string
	line, col int
}

// workCases are moon.work files (§7), valid ones first.
var workCases = []workCase{
	{name: "one member, no spaces", src: "members=[\"./app\"]\npreferred_target=\"wasm-gc\"",
		want: manifest.Work{Members: []string{"./app"}, PreferredTarget: "wasm-gc"}},
	{name: "multi-line, trailing comma", src: "members = [\n  \"./app\",\n  \"./liba\",\n]\n",
		want: manifest.Work{Members: []string{"./app", "./liba"}}},
	{name: "root and outside", src: "members = [\n  \".\",\n  \"../../../third_party/async\",\n]",
		want: manifest.Work{Members: []string{".", "../../../third_party/async"}}},
	{name: "empty", src: "members = []", want: manifest.Work{Members: []string{}}},
	{name: "as written: absolute, repeated", src: `members = ["/opt/mods/x", "a", "a"]`,
		want: manifest.Work{Members: []string{"/opt/mods/x", "a", "a"}}},
	{name: "comments, CRLF, semicolon", src: crlf("// workspace\npreferred_target = \"js\";\nmembers = [\"a\", // first\n  \"b\"]; // end\n"),
		want: manifest.Work{Members: []string{"a", "b"}, PreferredTarget: "js"}},

	{name: "unknown key", src: "members = []\nname = \"x\"", msg: `unexpected key "name" in moon.work`, line: 2, col: 1},
	{name: "import", src: "members = []\nimport { \"x/y@1.0.0\" }", msg: `unexpected key "import"`, line: 2, col: 1},
	{name: "options", src: "members = []\noptions(members: [])", msg: `unexpected key "options"`, line: 2, col: 1},
	{name: "duplicate members", src: "members = []\nmembers = [\"a\"]", msg: `"members" is given twice (first at 1:1)`, line: 2, col: 1},
	{name: "duplicate preferred_target", src: "members = []\npreferred_target = \"js\"\npreferred_target = \"js\"", msg: `"preferred_target" is given twice (first at 2:1)`, line: 3, col: 1},
	{name: "missing members", src: `preferred_target = "js"`, msg: "moon.work has no members"},
	{name: "empty file", src: "", msg: "moon.work has no members"},
	{name: "non-string member", src: `members = ["a", 1]`, msg: "each a non-empty string", line: 1, col: 1},
	{name: "empty member", src: "\nmembers = [\"\"]", msg: "each a non-empty string", line: 2, col: 1},
	{name: "nested list member", src: `members = [["a"]]`, msg: "each a non-empty string", line: 1, col: 1},
	{name: "members a string", src: `members = "app"`, msg: "members must be a list", line: 1, col: 1},
	{name: "members a call", src: `members(a: "app")`, msg: "members must be a list", line: 1, col: 1},
	{name: "bad preferred_target", src: "members = []\npreferred_target = \"jvm\"", msg: "preferred_target must be one of", line: 2, col: 1},
	{name: "empty preferred_target", src: "members = []\npreferred_target = \"\"", msg: "preferred_target must be one of", line: 2, col: 1},
	{name: "preferred_target a number", src: "members = []\npreferred_target = 1", msg: "preferred_target must be one of", line: 2, col: 1},
	{name: "unclosed list", src: `members = ["a"`, msg: "unexpected end of file", line: 1, col: 15},
	{name: "single quotes", src: `members = ['a']`, msg: "unexpected character", line: 1, col: 12},
}

func TestParseWork(t *testing.T) {
	for _, tc := range workCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := manifest.ParseWork([]byte(tc.src))
			if tc.msg != "" {
				checkErr(t, err, manifest.WorkFile, tc.msg, tc.line, tc.col)
				return
			}
			if err != nil {
				t.Fatalf("ParseWork: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v; want %#v", got, tc.want)
			}
		})
	}
}

func TestMemberDirs(t *testing.T) {
	root := filepath.FromSlash("/ws")
	for _, tc := range []struct {
		name    string
		members []string
		want    []string // slash-separated
	}{
		{"none", []string{}, nil},
		{"relative joined and cleaned", []string{"./app", "lib/", ".", "x/../y"}, []string{"/ws", "/ws/app", "/ws/lib", "/ws/y"}},
		{"outside the workspace", []string{"../other/mod"}, []string{"/other/mod"}},
		{"absolute kept", []string{"/opt/mods/x", "/opt/mods//y/"}, []string{"/opt/mods/x", "/opt/mods/y"}},
		{"repeats removed", []string{"app", "./app", "app/", "/ws/app"}, []string{"/ws/app"}},
		{"sorted", []string{"zeta", "alpha", "/abs", "beta"}, []string{"/abs", "/ws/alpha", "/ws/beta", "/ws/zeta"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := manifest.Work{Members: tc.members}.MemberDirs(root)
			var want []string
			for _, w := range tc.want {
				want = append(want, filepath.FromSlash(w))
			}
			if !slices.Equal(got, want) {
				t.Errorf("MemberDirs(%q) of %q = %q; want %q", root, tc.members, got, want)
			}
		})
	}
}
