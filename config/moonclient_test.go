package config

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
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
	}{
		{name: "no file before", writes: 1},
		{name: "user file before", before: ptr(`{"registry":"https://example.com", "x": 1}` + "\n"), writes: 1},
		{name: "written twice keeps the original backup", before: ptr(`{"registry":"https://a"}`), writes: 2},
		{name: "no file before, rewritten for another URL", writes: 2, other: true},
		{name: "user file before, rewritten for another URL", before: ptr(`{}`), writes: 2, other: true},
		{name: "malformed file replaced with force", before: ptr(`{"registry":`), writes: 1, force: true},
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
			for i := range tt.writes {
				b := base
				if tt.other && i == 0 {
					b = "http://elsewhere:9"
				}
				if _, err := WriteMoonConfig(path, b, tt.force); err != nil {
					t.Fatal(err)
				}
			}
			var got moonConfig
			b, _ := os.ReadFile(path)
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("written config is not JSON: %v: %s", err, b)
			}
			if got != (moonConfig{Registry: base, Index: base + "/git/index", Symbols: base + "/symbols.zip"}) {
				t.Errorf("written config = %+v", got)
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
			_, err := WriteMoonConfig(path, base, false)
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
	if _, err := WriteMoonConfig(path, base, false); err != nil {
		t.Fatal(err)
	}
	edited := `{"registry": "https://edited-by-hand"}`
	if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteMoonConfig(path, base, false); !errors.Is(err, ErrBackupExists) {
		t.Fatalf("err = %v, want ErrBackupExists", err)
	}
	if b, _ := os.ReadFile(path); string(b) != edited {
		t.Error("the refused write changed config.json")
	}
	if b, _ := os.ReadFile(backupPath(path)); string(b) != original {
		t.Error("the refused write changed the backup")
	}
	// --force backs the current file up over the old backup.
	if _, err := WriteMoonConfig(path, base, true); err != nil {
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
	tests := []struct {
		name, path string
		want       bool
	}{
		{"no file", filepath.Join(dir, "none.json"), false},
		{"points here", write("here.json", `{"registry": "`+base+`"}`), false},
		{"points elsewhere", write("else.json", `{"registry": "https://mooncakes.io"}`), true},
		{"malformed", write("bad.json", `{"registry":`), true},
	}
	for _, tt := range tests {
		if got := MoonConfigOverrides(tt.path, base); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
