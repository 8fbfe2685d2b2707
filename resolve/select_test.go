package resolve

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"moonbit-registry/manifest"
)

// fakeSum is a well-formed checksum for the test's own index lines.
const fakeSum = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"

// xVersions are the versions of moonbitlang/x in the index snapshot, in
// semver order (0.4.39 was never published).
const xVersions = "0.1.0 0.2.0 0.3.0 0.3.1 0.3.2 0.4.2 0.4.3 0.4.4 0.4.5 0.4.6 0.4.7 0.4.8 0.4.9 " +
	"0.4.10 0.4.11 0.4.12 0.4.13 0.4.14 0.4.15 0.4.16 0.4.17 0.4.18 0.4.19 0.4.20 0.4.21 0.4.22 " +
	"0.4.23 0.4.24 0.4.25 0.4.26 0.4.27 0.4.28 0.4.29 0.4.30 0.4.31 0.4.32 0.4.33 0.4.34 0.4.35 " +
	"0.4.36 0.4.37 0.4.38 0.4.40"

// moonbitlangModules are the modules under user/moonbitlang/ in the
// snapshot; together they have 519 index lines, one version each.
var moonbitlangModules = []string{
	"moonbitlang/arduino", "moonbitlang/async", "moonbitlang/core", "moonbitlang/dummy_abort",
	"moonbitlang/esp32", "moonbitlang/formatter", "moonbitlang/json_deriving",
	"moonbitlang/json_deriving_codegen", "moonbitlang/lex", "moonbitlang/lex-runtime",
	"moonbitlang/lex/runtime", "moonbitlang/mbt-lexer", "moonbitlang/mbt_lexer", "moonbitlang/parser",
	"moonbitlang/protobuf", "moonbitlang/quickcheck", "moonbitlang/regexp", "moonbitlang/std",
	"moonbitlang/ulex", "moonbitlang/ulex-runtime", "moonbitlang/wasm4", "moonbitlang/x", "moonbitlang/yacc",
}

// expand turns "module v1 v2 ..." into module@v strings.
func expand(module, versions string) []string {
	var out []string
	for _, v := range strings.Fields(versions) {
		out = append(out, module+"@"+v)
	}
	return out
}

// skippedOf renders skipped dependencies as "from -> module" plus
// " (unresolved)" when the registry cannot satisfy them.
func skippedOf(ss []Skipped) []string {
	var out []string
	for _, s := range ss {
		line := s.From + " -> " + s.Module
		if s.Unresolved {
			line += " (unresolved)"
		}
		out = append(out, line)
	}
	return out
}

// archivesOf renders versions as module@version.
func archivesOf(vs []manifest.Entry) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Module+"@"+v.Version)
	}
	return out
}

// modulesOf lists the modules of versions sorted by module, once each.
func modulesOf(vs []manifest.Entry) []string {
	var out []string
	for _, v := range vs {
		if len(out) == 0 || out[len(out)-1] != v.Module {
			out = append(out, v.Module)
		}
	}
	return out
}

// TestSelectRealIndex runs Select and SelectDeps against the real index
// snapshot plus three lines of its own: a yank of moonbitlang/x@0.4.40 and
// two modules with dependencies the registry cannot or can only partly
// satisfy. Expected closures were worked out from the .index files: each
// requirement takes the lowest published version that satisfies it as a
// Cargo caret requirement.
func TestSelectRealIndex(t *testing.T) {
	ctx := t.Context()
	cat := snapshotCatalog(t)
	// A later line for a version overrides the earlier one: this yanks 0.4.40.
	cat.addLine(t, "moonbitlang/x", `{"name": "moonbitlang/x", "version": "0.4.40", "checksum": "`+fakeSum+`", "yanked": true}`)
	cat.addLine(t, "selecttest/broken", `{"name": "selecttest/broken", "version": "0.1.0", "deps": {`+
		`"nobody/missing": "0.1.0", `+ // no such module
		`"AdUhTkJm/bitviewer": "0.2.0", `+ // only 0.1.x published
		`"moonbitlang/x": ">=0.4.0", `+ // moon supports caret requirements only
		`"AdUhTkJm/u8str": "0.1.5"`+ // fine: followed
		`}, "checksum": "`+fakeSum+`"}`)
	// moon reads no yanked marker, so a requirement only a yanked version
	// satisfies still resolves to it: the mirror must hold it.
	cat.addLine(t, "selecttest/needsyanked", `{"name": "selecttest/needsyanked", "version": "0.1.0", "deps": {"moonbitlang/x": "0.4.40"}, "checksum": "`+fakeSum+`"}`)

	allX := expand("moonbitlang/x", xVersions)
	// AdUhTkJm/wasmtools@0.1.0 needs u8str ^0.1.5, bitviewer ^0.1.10 and
	// x ^0.4.30; u8str@0.1.5 needs bitviewer ^0.1.8.
	wasmtools := []string{
		"AdUhTkJm/bitviewer@0.1.8", "AdUhTkJm/bitviewer@0.1.10", "AdUhTkJm/u8str@0.1.5",
		"AdUhTkJm/wasmtools@0.1.0", "moonbitlang/x@0.4.30",
	}
	// tonyfettes/tree_sitter@0.1.7: deps x ^0.4.21, c ^0.1.4 and a path-only
	// tree_sitter_language; bin-deps yacc ^0.2.9 and lex ^0.1.6. lex@0.1.6
	// needs ArgParser ^0.1.9 and x ^0.4.21; yacc@0.2.9 needs ArgParser ^0.1.8
	// and x ^0.4.21; ArgParser 0.1.9 and 0.1.8 need trie ^0.2.4 and ^0.2.3.
	treeSitter := []string{
		"Yoorkin/ArgParser@0.1.8", "Yoorkin/ArgParser@0.1.9", "Yoorkin/trie@0.2.3", "Yoorkin/trie@0.2.4",
		"moonbitlang/lex@0.1.6", "moonbitlang/x@0.4.21", "moonbitlang/yacc@0.2.9",
		"tonyfettes/c@0.1.4", "tonyfettes/tree_sitter@0.1.7",
	}

	tests := []struct {
		name     string
		patterns []string
		opts     SelectOptions
		want     []string // exact, in order; nil when only wantN is checked
		wantN    int
		wantMods []string // with wantN: the modules, in order
		skipped  []string
		wantErr  error
	}{
		{
			name:     "module takes every version, yanked too (the resolver can select it)",
			patterns: []string{"moonbitlang/x"},
			opts:     SelectOptions{Strict: true},
			want:     allX,
		},
		{
			name:     "module takes a deprecated version",
			patterns: []string{"mizchi/git"},
			opts:     SelectOptions{Strict: true},
			want:     []string{"mizchi/git@0.1.1", "mizchi/git@0.1.2", "mizchi/git@0.2.0"},
		},
		{
			name:     "latest passes over a deprecated newest version and says so",
			patterns: []string{"mizchi/git"},
			opts:     SelectOptions{Strict: true, Latest: true},
			want:     []string{"mizchi/git@0.1.2"},
			skipped:  []string{" -> mizchi/git@0.2.0"},
		},
		{
			name:     "exact version",
			patterns: []string{"moonbitlang/x@0.4.6"},
			opts:     SelectOptions{Strict: true},
			want:     []string{"moonbitlang/x@0.4.6"},
		},
		{
			name:     "yanked version named exactly",
			patterns: []string{"moonbitlang/x@0.4.40"},
			opts:     SelectOptions{Strict: true},
			want:     []string{"moonbitlang/x@0.4.40"},
		},
		{
			name:     "patterns overlap without duplicates",
			patterns: []string{"moonbitlang/lex/runtime@0.1.1", "moonbitlang/lex/runtime"},
			opts:     SelectOptions{Strict: true},
			want:     []string{"moonbitlang/lex/runtime@0.1.0", "moonbitlang/lex/runtime@0.1.1"},
		},
		{
			name:     "owner wildcard includes nested modules",
			patterns: []string{"moonbitlang/*"},
			opts:     SelectOptions{Strict: true},
			wantN:    519, // every line, the yanked one too
			wantMods: moonbitlangModules,
		},
		{
			name:     "nested wildcard",
			patterns: []string{"moonbitlang/lex/*"},
			opts:     SelectOptions{Strict: true},
			want:     []string{"moonbitlang/lex/runtime@0.1.0", "moonbitlang/lex/runtime@0.1.1"},
		},
		{
			name:     "star refused without All",
			patterns: []string{"*"},
			wantErr:  ErrBadPattern,
		},
		{
			name:     "star with All",
			patterns: []string{"*"},
			opts:     SelectOptions{Strict: true, All: true},
			wantN:    6548 + 2, // the snapshot plus the two new modules
		},
		{
			name:     "latest skips a yanked newest version and orders by semver",
			patterns: []string{"moonbitlang/x", "AdUhTkJm/bitviewer"},
			opts:     SelectOptions{Strict: true, Latest: true},
			want:     []string{"AdUhTkJm/bitviewer@0.1.10", "moonbitlang/x@0.4.38"},
			skipped:  []string{" -> moonbitlang/x@0.4.40"},
		},
		{
			name:     "a version latest passed over but a dependency needs is taken, not reported",
			patterns: []string{"moonbitlang/x", "selecttest/needsyanked"},
			opts:     SelectOptions{Latest: true},
			want:     []string{"moonbitlang/x@0.4.38", "moonbitlang/x@0.4.40", "selecttest/needsyanked@0.1.0"},
		},
		{
			name:     "latest prefers a release over a newer prerelease",
			patterns: []string{"peter-jerry-ye/advent_of_code"},
			opts:     SelectOptions{Strict: true, Latest: true},
			want:     []string{"peter-jerry-ye/advent_of_code@0.3.0"},
		},
		{
			name:     "latest of a module with only prereleases",
			patterns: []string{"tiye/preact"},
			opts:     SelectOptions{Strict: true, Latest: true},
			want:     []string{"tiye/preact@0.0.1-a3"},
		},
		{
			name:     "latest follows dependencies unless strict",
			patterns: []string{"AdUhTkJm/u8str"},
			opts:     SelectOptions{Latest: true},
			want:     []string{"AdUhTkJm/bitviewer@0.1.8", "AdUhTkJm/u8str@0.1.5"},
		},
		{name: "unknown module", patterns: []string{"nobody/nothing"}, wantErr: ErrNoMatch},
		{name: "unknown owner wildcard", patterns: []string{"nobody/*"}, wantErr: ErrNoMatch},
		{name: "unknown version", patterns: []string{"moonbitlang/x@9.9.9"}, wantErr: ErrNoMatch},
		{name: "one pattern of several matches nothing", patterns: []string{"moonbitlang/x", "nobody/nothing"}, wantErr: ErrNoMatch},
		{name: "empty", patterns: []string{""}, wantErr: ErrBadPattern},
		{name: "owner only", patterns: []string{"moonbitlang"}, wantErr: ErrBadPattern},
		{name: "empty version", patterns: []string{"moonbitlang/x@"}, wantErr: ErrBadPattern},
		{name: "invalid version", patterns: []string{"moonbitlang/x@latest"}, wantErr: ErrBadPattern},
		{name: "version on a wildcard", patterns: []string{"moonbitlang/*@0.1.0"}, wantErr: ErrBadPattern},
		{name: "version on star", patterns: []string{"*@0.1.0"}, opts: SelectOptions{All: true}, wantErr: ErrBadPattern},
		{name: "wildcard owner", patterns: []string{"*/x"}, wantErr: ErrBadPattern},
		{name: "traversal", patterns: []string{"../moonbitlang/x"}, wantErr: ErrBadPattern},
		{name: "absolute", patterns: []string{"/moonbitlang/x"}, wantErr: ErrBadPattern},
		{
			name:     "strict takes no dependencies",
			patterns: []string{"AdUhTkJm/wasmtools"},
			opts:     SelectOptions{Strict: true},
			want:     []string{"AdUhTkJm/wasmtools@0.1.0"},
		},
		{
			name:     "dependency closure three deep",
			patterns: []string{"AdUhTkJm/wasmtools"},
			want:     wasmtools,
		},
		{
			name:     "dependency closure four deep through bin-deps",
			patterns: []string{"tonyfettes/tree_sitter@0.1.7"},
			want:     treeSitter,
			skipped:  []string{"tonyfettes/tree_sitter@0.1.7 -> tonyfettes/tree_sitter_language"},
		},
		{
			name:     "every version of a module shares one dependency version",
			patterns: []string{"AdUhTkJm/u8str"},
			want:     []string{"AdUhTkJm/bitviewer@0.1.8", "AdUhTkJm/u8str@0.1.3", "AdUhTkJm/u8str@0.1.4", "AdUhTkJm/u8str@0.1.5"},
		},
		{
			name:     "path dependencies without a version are skipped",
			patterns: []string{"tonyfettes/ssl"},
			want:     []string{"tonyfettes/ssl@0.1.0", "tonyfettes/ssl@0.1.1"},
			skipped:  []string{"tonyfettes/ssl@0.1.0 -> tonyfettes/uv", "tonyfettes/ssl@0.1.1 -> tonyfettes/uv"},
		},
		{
			// Its opentelemetry_proto_mbt dep is {"version": "0.1.0", "path": ...}:
			// the version resolves from the registry, where only 0.0.x exists.
			name:     "path dependency with a version nobody published",
			patterns: []string{"ryota0624/moonbit_otel@0.0.1"},
			want:     []string{"moonbitlang/async@0.15.0", "moonbitlang/protobuf@0.1.1", "ryota0624/moonbit_otel@0.0.1"},
			skipped:  []string{"ryota0624/moonbit_otel@0.0.1 -> ryota0624/opentelemetry_proto_mbt (unresolved)"},
		},
		{
			name:     "unresolvable dependencies are marked, the rest followed",
			patterns: []string{"selecttest/broken"},
			want:     []string{"AdUhTkJm/bitviewer@0.1.8", "AdUhTkJm/u8str@0.1.5", "selecttest/broken@0.1.0"},
			skipped: []string{ // sorted by dependency name
				"selecttest/broken@0.1.0 -> AdUhTkJm/bitviewer (unresolved)",
				"selecttest/broken@0.1.0 -> moonbitlang/x (unresolved)",
				"selecttest/broken@0.1.0 -> nobody/missing (unresolved)",
			},
		},
		{
			name:     "a requirement only a yanked version satisfies resolves to it",
			patterns: []string{"selecttest/needsyanked"},
			want:     []string{"moonbitlang/x@0.4.40", "selecttest/needsyanked@0.1.0"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := Select(ctx, cat, tt.patterns, tt.opts)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Select(%q) error = %v, want %v", tt.patterns, err, tt.wantErr)
				}
				// The message names the offending pattern.
				bad := tt.patterns[len(tt.patterns)-1]
				if !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) {
					t.Errorf("error %q does not name pattern %q", err, bad)
				}
				return
			}
			if err != nil {
				t.Fatalf("Select(%q): %v", tt.patterns, err)
			}
			got := archivesOf(sel.Versions)
			if tt.want != nil && !slices.Equal(got, tt.want) {
				t.Errorf("versions:\n got %q\nwant %q", got, tt.want)
			}
			if tt.want == nil && len(got) != tt.wantN {
				t.Errorf("got %d versions, want %d", len(got), tt.wantN)
			}
			if tt.wantMods != nil && !slices.Equal(modulesOf(sel.Versions), tt.wantMods) {
				t.Errorf("modules:\n got %q\nwant %q", modulesOf(sel.Versions), tt.wantMods)
			}
			if tt.opts.Latest && tt.opts.Strict && slices.Contains(got, "moonbitlang/x@0.4.40") {
				t.Errorf("--latest selected the yanked moonbitlang/x@0.4.40")
			}
			if gotSkipped := skippedOf(sel.Skipped); !slices.Equal(gotSkipped, tt.skipped) {
				t.Errorf("skipped:\n got %q\nwant %q", gotSkipped, tt.skipped)
			}
		})
	}

	depTests := []struct {
		name    string
		deps    map[string]manifest.Dep
		want    []string
		skipped []string
	}{
		{
			name: "lowest satisfying version of each direct dependency and their closure",
			deps: map[string]manifest.Dep{
				"AdUhTkJm/u8str": {Version: "0.1.4"},
				"moonbitlang/x":  {Version: "^0.4.30"},
			},
			want: []string{"AdUhTkJm/bitviewer@0.1.8", "AdUhTkJm/u8str@0.1.4", "moonbitlang/x@0.4.30"},
		},
		{
			name: "partial requirement",
			deps: map[string]manifest.Dep{"AdUhTkJm/bitviewer": {Version: "0.1"}},
			want: []string{"AdUhTkJm/bitviewer@0.1.0"},
		},
		{
			name: "the chain",
			deps: map[string]manifest.Dep{"AdUhTkJm/wasmtools": {Version: "0.1.0"}},
			want: wasmtools,
		},
		{
			name: "path and git dependencies are the project's own",
			deps: map[string]manifest.Dep{
				"me/local":                {Path: "../local"},
				"me/remote":               {Git: "https://example.invalid/me/remote.git", Branch: "main"},
				"moonbitlang/lex/runtime": {Version: "0.1.1"},
			},
			want:    []string{"moonbitlang/lex/runtime@0.1.1"},
			skipped: []string{"moon.mod.json -> me/local", "moon.mod.json -> me/remote"},
		},
		{
			name: "unresolvable direct dependencies",
			deps: map[string]manifest.Dep{
				"nobody/missing":          {Version: "1.0.0"},
				"moonbitlang/x":           {Version: "1.0.0"},
				"moonbitlang/lex/runtime": {Version: "~0.1.0"},
			},
			skipped: []string{
				"moon.mod.json -> moonbitlang/lex/runtime (unresolved)",
				"moon.mod.json -> moonbitlang/x (unresolved)",
				"moon.mod.json -> nobody/missing (unresolved)",
			},
		},
	}
	for _, tt := range depTests {
		t.Run("deps/"+tt.name, func(t *testing.T) {
			var reqs []manifest.Require
			for name, d := range tt.deps {
				reqs = append(reqs, manifest.Require{From: "moon.mod.json", Module: name, Dep: d})
			}
			slices.SortFunc(reqs, func(a, b manifest.Require) int { return strings.Compare(a.Module, b.Module) })
			sel, err := SelectDeps(ctx, cat, reqs)
			if err != nil {
				t.Fatalf("SelectDeps: %v", err)
			}
			if got := archivesOf(sel.Versions); !slices.Equal(got, tt.want) {
				t.Errorf("versions:\n got %q\nwant %q", got, tt.want)
			}
			if got := skippedOf(sel.Skipped); !slices.Equal(got, tt.skipped) {
				t.Errorf("skipped:\n got %q\nwant %q", got, tt.skipped)
			}
		})
	}
}
