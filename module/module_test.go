package module

import (
	"encoding/json"
	"errors"
	"net/url"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"moonbit-registry/internal/testsupport"
)

func TestParseArchivePathForms(t *testing.T) {
	tests := []struct {
		name    string
		forms   []string // every form must parse to want
		module  string
		version string
	}{
		{
			name:    "nested module",
			forms:   []string{"moonbitlang%2Flex%2Fruntime%2F0.1.0.zip", "moonbitlang/lex/runtime/0.1.0.zip", "moonbitlang/lex%2Fruntime/0.1.0.zip"},
			module:  "moonbitlang/lex/runtime",
			version: "0.1.0",
		},
		{
			name:    "emoji",
			forms:   []string{"illusory0x0%2F%F0%9F%90%AB%2F0.0.1.zip", "illusory0x0/%F0%9F%90%AB/0.0.1.zip", "illusory0x0/🐫/0.0.1.zip"},
			module:  "illusory0x0/🐫",
			version: "0.0.1",
		},
		{
			name: "chinese",
			forms: []string{
				"CAIMEOX%2F" + url.PathEscape("原来可以发中文包") + "%2F0.1.0.zip",
				"CAIMEOX/" + url.PathEscape("原来可以发中文包") + "/0.1.0.zip",
				"CAIMEOX/原来可以发中文包/0.1.0.zip",
			},
			module:  "CAIMEOX/原来可以发中文包",
			version: "0.1.0",
		},
		{
			name:    "build metadata",
			forms:   []string{"owner%2Fpkg%2F0.1.2%2B3.zip", "owner/pkg/0.1.2%2B3.zip", "owner/pkg/0.1.2+3.zip"},
			module:  "owner/pkg",
			version: "0.1.2+3",
		},
		{
			name:    "prerelease",
			forms:   []string{"a_b.c-d%2Fx-y_z%2F1.0.0-rc.1%2Bbuild.5.zip", "a_b.c-d/x-y_z/1.0.0-rc.1+build.5.zip"},
			module:  "a_b.c-d/x-y_z",
			version: "1.0.0-rc.1+build.5",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := Version{Module: tt.module, Version: tt.version}
			for _, form := range tt.forms {
				got, err := ParseArchivePath(form)
				if err != nil {
					t.Fatalf("ParseArchivePath(%q): %v", form, err)
				}
				if got != want {
					t.Errorf("ParseArchivePath(%q) = %+v, want %+v", form, got, want)
				}
			}
		})
	}
}

func TestParseArchivePathRejects(t *testing.T) {
	long := strings.Repeat("a", 2000)
	tests := []struct{ name, raw string }{
		{"empty", ""},
		{"dotdot plain", "../x/1.0.0.zip"},
		{"dotdot in rest", "a/../1.0.0.zip"},
		{"dotdot encoded", "%2e%2e/x/1.0.0.zip"},
		{"dotdot encoded upper", "a%2F%2E%2E%2F1.0.0.zip"},
		{"dotdot encoded escaping", "..%2F..%2Fetc%2Fpasswd%2F1.0.0.zip"},
		{"dot segment", "a/./b/1.0.0.zip"},
		{"hidden owner", ".tmp/b/1.0.0.zip"},
		{"hidden segment", "a/.b/1.0.0.zip"},
		{"nul", "a/b%00/1.0.0.zip"},
		{"nul in version", "a/b/1.0.0%00.zip"},
		{"newline", "a/b%0A/1.0.0.zip"},
		{"empty segment", "a//b/1.0.0.zip"},
		{"leading slash", "/a/b/1.0.0.zip"},
		{"trailing slash", "a/b/1.0.0.zip/"},
		{"empty owner encoded", "%2Fb%2F1.0.0.zip"},
		{"backslash", `a\b/c/1.0.0.zip`},
		{"backslash encoded", "a%5Cb/c/1.0.0.zip"},
		{"space", "a/b%20c/1.0.0.zip"},
		{"no zip", "a/b/1.0.0"},
		{"other suffix", "a/b/1.0.0.tar.gz"},
		{"no version", "a/b/.zip"},
		{"module without rest", "a/1.0.0.zip"},
		{"bad semver two parts", "a/b/1.0.zip"},
		{"bad semver leading zero", "a/b/01.0.0.zip"},
		{"bad semver v prefix", "a/b/v1.0.0.zip"},
		{"bad escape", "a/b/%zz1.0.0.zip"},
		{"invalid utf8", "a/b%FF/1.0.0.zip"},
		{"too long", "a/" + long + "/1.0.0.zip"},
		{"long segment", "a/" + strings.Repeat("b", 200) + "/1.0.0.zip"},
		{"too many segments", "a/b/c/d/e/f/g/h/i/j/1.0.0.zip"},
		{"query-ish", "a/b?x=1/1.0.0.zip"},
		{"percent literal", "a/b%25/1.0.0.zip"},
		{"slash lookalike", "a/b%E2%88%95c/1.0.0.zip"}, // U+2215 DIVISION SLASH
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mv, err := ParseArchivePath(tt.raw)
			if err == nil {
				t.Fatalf("ParseArchivePath(%q) = %+v, want error", tt.raw, mv)
			}
			if !errors.Is(err, ErrBadName) {
				t.Errorf("error %v does not wrap ErrBadName", err)
			}
		})
	}
}

// TestIndexSnapshotNamesValid checks the grammar against every module name
// and version in the real index snapshot: rejecting a real package would
// make it unservable.
func TestIndexSnapshotNamesValid(t *testing.T) {
	root := filepath.Join("..", "testdata", "mooncakes-index")
	versions := 0
	err := testsupport.WalkIndex(root, func(module string, data []byte) error {
		var line struct{ Version string }
		if err := json.Unmarshal(data, &line); err != nil {
			return err
		}
		mv := Version{Module: module, Version: line.Version}
		if err := mv.Validate(); err != nil {
			t.Errorf("real archive rejected: %v", err)
			return nil
		}
		oneSegment := url.QueryEscape(mv.RelPath())
		for _, form := range []string{mv.RelPath(), oneSegment} {
			if got, err := ParseArchivePath(form); err != nil || got != mv {
				t.Errorf("ParseArchivePath(%q) = %+v, %v; want %+v", form, got, err, mv)
			}
		}
		versions++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if versions == 0 {
		t.Fatal("no versions found in the snapshot")
	}
}

func FuzzParseArchivePath(f *testing.F) {
	for _, seed := range []string{
		"moonbitlang%2Flex%2Fruntime%2F0.1.0.zip",
		"moonbitlang/lex/runtime/0.1.0.zip",
		"illusory0x0/%F0%9F%90%AB/0.0.1.zip",
		"owner%2Fpkg%2F0.1.2%2B3.zip",
		"../x/1.0.0.zip",
		"%2e%2e/x/1.0.0.zip",
		"a/%2e%2e%2f%2e%2e/1.0.0.zip",
		"a/b%00/1.0.0.zip",
		"a//b/1.0.0.zip",
		`a\b/c/1.0.0.zip`,
		"a%5Cb/c/1.0.0.zip",
		"/etc/passwd/1.0.0.zip",
		".tmp/put-1.part/1.0.0.zip",
		"a/b/1.0.0.zip/",
		"a/b/1.0.0%2Ezip",
		"%",
		"a/b/1.0.0-%2e%2e.zip",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		mv, err := ParseArchivePath(raw)
		if err != nil {
			if !errors.Is(err, ErrBadName) {
				t.Fatalf("error %v does not wrap ErrBadName", err)
			}
			return
		}
		if err := mv.Validate(); err != nil {
			t.Fatalf("parsed %+v does not validate: %v", mv, err)
		}
		rel := mv.RelPath()
		if path.Clean(rel) != rel || path.IsAbs(rel) || strings.ContainsAny(rel, "\\\x00") {
			t.Fatalf("RelPath %q is not a clean relative path", rel)
		}
		for _, seg := range strings.Split(rel, "/") {
			if seg == ".." || seg == "." || seg == "" || strings.HasPrefix(seg, ".") {
				t.Fatalf("RelPath %q has segment %q", rel, seg)
			}
		}
		if !filepath.IsLocal(filepath.FromSlash(rel)) {
			t.Fatalf("RelPath %q is not local", rel)
		}
		for _, form := range []string{rel, url.QueryEscape(rel), escapeSegments(rel)} {
			again, err := ParseArchivePath(form)
			if err != nil || again != mv {
				t.Fatalf("re-parsing %q = %+v, %v; want %+v", form, again, err, mv)
			}
		}
	})
}

func escapeSegments(rel string) string {
	segs := strings.Split(rel, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

func TestParseVersionRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Version
		ok   bool
	}{
		{"moonbitlang/x@0.4.6", Version{"moonbitlang/x", "0.4.6"}, true},
		{"moonbitlang/lex/runtime@1.0.0+build.5", Version{"moonbitlang/lex/runtime", "1.0.0+build.5"}, true},
		{"illusory0x0/🐫@0.1.0", Version{"illusory0x0/🐫", "0.1.0"}, true},
		{"moonbitlang/x", Version{}, false},
		{"moonbitlang/x@", Version{}, false},
		{"../x@1.0.0", Version{}, false},
	} {
		got, err := ParseVersion(tt.in)
		if (err == nil) != tt.ok || (tt.ok && (got != tt.want || got.String() != tt.in)) {
			t.Errorf("ParseVersion(%q) = %+v, %v", tt.in, got, err)
		}
		if !tt.ok && !errors.Is(err, ErrBadName) {
			t.Errorf("ParseVersion(%q) error %v is not ErrBadName", tt.in, err)
		}
	}
}
