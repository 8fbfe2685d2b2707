package manifest_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"moonbit-registry/manifest"
)

// fuzzSeeds are every moon.mod and moon.work of the tables, valid and
// not, plus a few fragments that stop in the middle of a construct.
func fuzzSeeds() []string {
	var out []string
	for _, tc := range dslForms {
		out = append(out, tc.src)
	}
	for _, tc := range dslErrors {
		if len(tc.src) < 4096 { // the 1 MiB one only slows the fuzzer
			out = append(out, tc.src)
		}
	}
	for _, tc := range workCases {
		out = append(out, tc.src)
	}
	return append(out,
		`name = "a/b" import { "x/y@1.0.0" as`,
		`options("k": {"n": [1, -2, true, false, "s"`,
		"name = \"a\\u00",
		"members = [\"a\",\n\"b\"\r",
		`"@a/b-c/d`,
		"@",
		"-",
	)
}

// checkFuzzErr holds for any input: an error says the manifest is
// invalid, and a position is inside the input (1-based, the column in
// bytes, at most one past the end of its line).
func checkFuzzErr(t *testing.T, src string, err error) {
	t.Helper()
	if !errors.Is(err, manifest.ErrInvalid) {
		t.Fatalf("errors.Is(%v, ErrInvalid) = false for %q", err, src)
	}
	var se *manifest.SyntaxError
	if !errors.As(err, &se) {
		return
	}
	lines := strings.Split(src, "\n")
	if se.Pos.Line < 1 || se.Pos.Col < 1 || se.Pos.Line > len(lines) {
		t.Fatalf("position %s outside the %d lines of %q (%v)", se.Pos, len(lines), src, err)
	}
	if n := len(lines[se.Pos.Line-1]); se.Pos.Col > n+1 {
		t.Fatalf("column %d past the end of line %d (%d bytes) of %q (%v)", se.Pos.Col, se.Pos.Line, n, src, err)
	}
}

// parseWork is parseDSL's twin for moon.work.
func parseWork(t *testing.T, src string) (w manifest.Work, err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("ParseWork(%q) panicked: %v", src, r)
		}
	}()
	return manifest.ParseWork([]byte(src))
}

func FuzzParseDSL(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		m, err := parseDSL(t, src) // a panic fails the input
		if err != nil {
			checkFuzzErr(t, src, err)
			return
		}
		// What moon.mod accepts: a name, and only versioned registry deps.
		if m.Name == "" {
			t.Fatalf("accepted %q without a name", src)
		}
		for name, d := range m.Deps {
			if d.Version == "" || !d.Registry() {
				t.Fatalf("accepted %q with dependency %q = %+v", src, name, d)
			}
		}
	})
}

func FuzzParseWork(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	backends := []string{"", "wasm", "wasm-gc", "js", "native", "llvm"}
	f.Fuzz(func(t *testing.T, src string) {
		w, err := parseWork(t, src)
		if err != nil {
			checkFuzzErr(t, src, err)
			return
		}
		if w.Members == nil || slices.Contains(w.Members, "") {
			t.Fatalf("accepted %q with members %q", src, w.Members)
		}
		if !slices.Contains(backends, w.PreferredTarget) {
			t.Fatalf("accepted %q with preferred_target %q", src, w.PreferredTarget)
		}
	})
}
