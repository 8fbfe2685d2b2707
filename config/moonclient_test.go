package config

import (
	"cmp"
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const base = "http://127.0.0.1:8080"

func TestWriteThenResetRestoresExactly(t *testing.T) {
	tests := []struct {
		name   string
		before *string // nil: no file
		writes int
		other  bool // first write for another base URL, then for base
		force  bool
		format MoonConfigFormat
	}{
		{name: "no file before", writes: 1},
		{name: "user file before", before: ptr(`{"registry":"https://example.com", "x": 1}` + "\n"), writes: 1},
		{name: "written twice keeps the original backup", before: ptr(`{"registry":"https://a"}`), writes: 2},
		{name: "no file before, rewritten for another URL", writes: 2, other: true},
		{name: "user file before, rewritten for another URL", before: ptr(`{}`), writes: 2, other: true},
		{name: "malformed file replaced with force", before: ptr(`{"registry":`), writes: 1, force: true},
		{name: "split form, no file before", writes: 1, format: MoonFormatSplit},
		{name: "split form over a user file", before: ptr(`{"registry":"https://a","index":"https://a/git/index"}`), writes: 2, format: MoonFormatSplit},
		{name: "split form after the legacy form", before: ptr(`{}`), writes: 2, other: true, format: MoonFormatSplit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "moon", "config.json")
			if tt.before != nil {
				os.MkdirAll(filepath.Dir(path), 0o755)
				if err := os.WriteFile(path, []byte(*tt.before), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			format := cmp.Or(tt.format, MoonFormatLegacy)
			for i := range tt.writes {
				b, f := base, format
				if tt.other && i == 0 {
					b, f = "http://elsewhere:9", MoonFormatLegacy
				}
				if _, err := WriteMoonConfig(path, b, f, tt.force); err != nil {
					t.Fatal(err)
				}
			}
			var got map[string]string
			b, _ := os.ReadFile(path)
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("written config is not JSON: %v: %s", err, b)
			}
			want := map[string]string{"registry": base, "index": base + "/git/index", "symbols": base + "/symbols.zip"}
			if format == MoonFormatSplit {
				want = map[string]string{"api": base, "index": base + "/git/index", "download": base, "symbols": base + "/symbols.zip"}
			}
			if !maps.Equal(got, want) {
				t.Errorf("written config = %v, want %v", got, want)
			}
			if m := MoonConfigMismatch(path, base); m != "" {
				t.Errorf("the written file does not count as pointing here: %s", m)
			}
			if _, err := ResetMoonConfig(path); err != nil {
				t.Fatal(err)
			}
			after, err := os.ReadFile(path)
			if tt.before == nil {
				if !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("reset left a file where there was none: %q, %v", after, err)
				}
			} else if string(after) != *tt.before {
				t.Errorf("after reset = %q, want %q", after, *tt.before)
			}
			if _, err := os.Lstat(backupPath(path)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("backup left behind after reset: %v", err)
			}
		})
	}
}

func TestWriteRefusesUnusableFile(t *testing.T) {
	tests := []struct {
		name  string
		setup func(path string) error
	}{
		{name: "malformed", setup: func(p string) error { return os.WriteFile(p, []byte("{not json"), 0o644) }},
		{name: "unreadable (a directory)", setup: func(p string) error { return os.Mkdir(p, 0o755) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.json")
			if err := tt.setup(path); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(path)
			_, err := WriteMoonConfig(path, base, MoonFormatLegacy, false)
			if !errors.Is(err, ErrMoonConfigUnusable) {
				t.Fatalf("err = %v, want ErrMoonConfigUnusable", err)
			}
			after, _ := os.ReadFile(path)
			if string(before) != string(after) {
				t.Error("refused write changed the file")
			}
			if _, err := os.Lstat(backupPath(path)); !errors.Is(err, fs.ErrNotExist) {
				t.Error("refused write left a backup")
			}
		})
	}
}

func TestResetWithNothingToRestore(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	if _, err := ResetMoonConfig(path); !errors.Is(err, ErrNothingToReset) {
		t.Errorf("no file: err = %v", err)
	}
	user := `{"registry": "https://mine", "index": "https://mine/git/index", "symbols": "https://mine/symbols.zip"}`
	os.WriteFile(path, []byte(user), 0o644)
	if _, err := ResetMoonConfig(path); !errors.Is(err, ErrNothingToReset) {
		t.Errorf("user's own file: err = %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != user {
		t.Error("reset touched a file it did not write")
	}
}

func TestMoonConfigPath(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if p, _ := MoonConfigPath(env(map[string]string{"MOON_HOME": "/m", "HOME": "/h"})); p != "/m/config.json" {
		t.Errorf("with MOON_HOME: %q", p)
	}
	if p, _ := MoonConfigPath(env(map[string]string{"HOME": "/h"})); p != "/h/.moon/config.json" {
		t.Errorf("with HOME: %q", p)
	}
	if _, err := MoonConfigPath(env(nil)); err == nil {
		t.Error("no HOME: want an error")
	}
}

func ptr(s string) *string { return &s }

func TestWriteRefusesToLoseAChangeMadeAfterAnEarlierWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	original := `{"registry": "https://original"}`
	if err := os.WriteFile(path, []byte(original), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteMoonConfig(path, base, MoonFormatLegacy, false); err != nil {
		t.Fatal(err)
	}
	edited := `{"registry": "https://edited-by-hand"}`
	if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteMoonConfig(path, base, MoonFormatLegacy, false); !errors.Is(err, ErrBackupExists) {
		t.Fatalf("err = %v, want ErrBackupExists", err)
	}
	if b, _ := os.ReadFile(path); string(b) != edited {
		t.Error("the refused write changed config.json")
	}
	if b, _ := os.ReadFile(backupPath(path)); string(b) != original {
		t.Error("the refused write changed the backup")
	}
	// --force backs the current file up over the old backup.
	if _, err := WriteMoonConfig(path, base, MoonFormatLegacy, true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(backupPath(path)); string(b) != edited {
		t.Errorf("backup after --force = %q, want the edited file", b)
	}
}

func TestMoonConfigOverrides(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(data), 0o644)
		return p
	}
	here := `"index": "` + base + `/git/index"`
	tests := []struct {
		name, path string
		want       string // substring of the mismatch; "" for none
	}{
		{"no file", filepath.Join(dir, "none.json"), ""},
		{"legacy here", write("here.json", `{"registry": "`+base+`", `+here+`, "symbols": "`+base+`/symbols.zip"}`), ""},
		{"split here", write("split.json", `{"api": "`+base+`", "download": "`+base+`", `+here+`}`), ""},
		{"legacy without symbols", write("nosym.json", `{"registry": "`+base+`", `+here+`}`), `no "symbols"`},
		{"points elsewhere", write("else.json", `{"registry": "https://mooncakes.io", "index": "https://mooncakes.io/git/index"}`), `"registry" is https://mooncakes.io`},
		{"split download elsewhere", write("dl.json", `{"api": "`+base+`", "download": "https://download.mooncakes.io", `+here+`}`), `"download" is`},
		{"no index", write("noindex.json", `{"registry": "`+base+`"}`), `no "index"`},
		{"malformed", write("bad.json", `{"registry":`), "not valid JSON"},
	}
	for _, tt := range tests {
		got := MoonConfigMismatch(tt.path, base)
		if (got == "") != (tt.want == "") || !strings.Contains(got, tt.want) {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestMoonFormatFor(t *testing.T) {
	tests := []struct {
		out  string
		want MoonConfigFormat
	}{
		{"moon 0.1.20260901 (abc1234 2026-09-01)\n", MoonFormatSplit},
		{"moon 0.1.20260828 (abc1234 2026-08-28)", MoonFormatSplit},
		{"moon 0.1.20260827 (abc1234 2026-08-27)", MoonFormatLegacy},
		{"moon 0.1.20250826 (8ab6c9e 2025-08-26)\n\nFeature flags enabled: rupes_recta", MoonFormatLegacy},
		{"moon 0.1.20261101 (abc1234 2026-11-01)\n\nFeature flags enabled: x", MoonFormatSplit},
		{"something else", MoonFormatLegacy},
		{"", MoonFormatLegacy},
	}
	for _, tt := range tests {
		if got, why := MoonFormatFor(tt.out); got != tt.want || why == "" {
			t.Errorf("MoonFormatFor(%q) = %s (%s), want %s", tt.out, got, why, tt.want)
		}
	}
}
