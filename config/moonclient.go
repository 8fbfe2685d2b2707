package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The moon client reads $MOON_HOME/config.json and crashes on a malformed
// one, so what follows writes it atomically, backs up what was there, and
// refuses to replace a file it cannot read or parse.

// ErrMoonConfigUnusable is returned when an existing client config.json
// cannot be read or parsed and force is off: it is never replaced silently.
var ErrMoonConfigUnusable = errors.New("existing moon config.json is unreadable or malformed")

// ErrBackupExists is returned by WriteMoonConfig when a backup from an
// earlier write exists and config.json is no longer what that write left.
var ErrBackupExists = errors.New("a backup of config.json already exists")

// ErrNothingToReset is returned by ResetMoonConfig when there is no backup
// and the current file was not written by us.
var ErrNothingToReset = errors.New("no moon config.json backup to restore")

// MoonConfigPath is $MOON_HOME/config.json, MOON_HOME defaulting to ~/.moon.
func MoonConfigPath(getenv func(string) string) (string, error) {
	home := getenv("MOON_HOME")
	if home == "" {
		userHome := getenv("HOME")
		if userHome == "" {
			return "", errors.New("neither MOON_HOME nor HOME is set")
		}
		home = filepath.Join(userHome, ".moon")
	}
	return filepath.Join(home, "config.json"), nil
}

// MoonConfigFormat is a form of the client's config.json.
type MoonConfigFormat string

const (
	// MoonFormatLegacy is {"registry", "index", "symbols"}: every client
	// reads it. Without "symbols" clients fetch symbols.zip elsewhere, so it
	// is always written.
	MoonFormatLegacy MoonConfigFormat = "legacy"
	// MoonFormatSplit is {"api", "index", "download", "symbols"}: clients
	// built from 2026-08-28 on (moon PR 2125) read it; older ones panic on
	// it (no "registry").
	MoonFormatSplit MoonConfigFormat = "split"
)

// splitSince is the build date of the first client that reads the split
// form.
const splitSince = "2026-08-28"

// ParseMoonConfigFormat checks a --format value.
func ParseMoonConfigFormat(s string) (MoonConfigFormat, error) {
	switch f := MoonConfigFormat(s); f {
	case MoonFormatLegacy, MoonFormatSplit:
		return f, nil
	}
	return "", fmt.Errorf("config.json format %q: must be %q or %q", s, MoonFormatLegacy, MoonFormatSplit)
}

// MoonFormatFor picks the form for the client whose `moon version` printed
// out ("moon 0.1.20260901 (abc1234 2026-09-01)"): split from the build date
// that reads it on, legacy otherwise and whenever the date cannot be read
// (every client reads legacy). why says how it decided.
func MoonFormatFor(out string) (f MoonConfigFormat, why string) {
	date := ""
	first, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	if i := strings.LastIndexByte(first, ')'); i > 0 {
		fields := strings.Fields(first[:i])
		if n := len(fields); n > 0 {
			date = fields[n-1]
		}
	}
	if _, err := time.Parse(time.DateOnly, date); err != nil {
		return MoonFormatLegacy, fmt.Sprintf("cannot read a build date from `moon version` (%q): the legacy form, which every client reads", strings.TrimSpace(out))
	}
	if date >= splitSince {
		return MoonFormatSplit, "moon was built " + date + ", and clients from " + splitSince + " on read the split form"
	}
	return MoonFormatLegacy, "moon was built " + date + ", before the split form (" + splitSince + ")"
}

// moonConfig holds every key of either form; encodeMoonConfig writes the
// ones of one form, in a fixed order.
type moonConfig struct {
	Registry string `json:"registry,omitempty"`
	API      string `json:"api,omitempty"`
	Index    string `json:"index,omitempty"`
	Download string `json:"download,omitempty"`
	Symbols  string `json:"symbols,omitempty"`
}

func moonConfigFor(baseURL string, f MoonConfigFormat) moonConfig {
	mc := moonConfig{Index: baseURL + "/git/index", Symbols: baseURL + "/symbols.zip"}
	if f == MoonFormatSplit {
		mc.API, mc.Download = baseURL, baseURL
	} else {
		mc.Registry = baseURL
	}
	return mc
}

func encodeMoonConfig(mc moonConfig) []byte {
	data, _ := json.MarshalIndent(mc, "", "  ") // strings only: cannot fail
	return append(data, '\n')
}

// baseOf is the base URL a config we wrote points at, and its form.
func (mc moonConfig) baseOf() (string, MoonConfigFormat) {
	if mc.Registry != "" {
		return mc.Registry, MoonFormatLegacy
	}
	return mc.Download, MoonFormatSplit
}

// writtenByUs tells whether data is exactly what WriteMoonConfig writes for
// some base URL in some form, byte for byte.
func writtenByUs(data []byte) bool {
	var mc moonConfig
	if json.Unmarshal(data, &mc) != nil {
		return false
	}
	b, f := mc.baseOf()
	return b != "" && bytes.Equal(data, encodeMoonConfig(moonConfigFor(b, f)))
}

// backupPath is where the file that WriteMoonConfig replaced is kept.
func backupPath(path string) string { return path + ".moonbit-registry.bak" }

// WriteMoonConfig points the moon client at baseURL by writing path in
// form f, every key pointing at baseURL. An
// existing file is copied to a backup first (an existing backup, the
// original, is kept). An unreadable or malformed existing file is an error
// unless force is set. It returns the backup's path, or "" if there was no
// file before.
func WriteMoonConfig(path, baseURL string, f MoonConfigFormat, force bool) (string, error) {
	old, err := os.ReadFile(path)
	existed := err == nil
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil && !force:
		return "", fmt.Errorf("%s: %w: %v (use --force to replace it)", path, ErrMoonConfigUnusable, err)
	case err == nil && !json.Valid(old) && !force:
		return "", fmt.Errorf("%s: %w: not valid JSON (use --force to replace it)", path, ErrMoonConfigUnusable)
	}
	data := encodeMoonConfig(moonConfigFor(baseURL, f))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	backup := ""
	if existed {
		backup = backupPath(path)
		if writtenByUs(old) {
			// Replacing our own earlier file: the backup (if any) already holds
			// what the user had before us.
			backup = existingBackup(backup)
			if bytes.Equal(old, data) {
				return backup, nil
			}
			return backup, writeFileAtomic(path, data, 0o644)
		}
		mode := fs.FileMode(0o644)
		if fi, err := os.Stat(path); err == nil {
			mode = fi.Mode().Perm()
		}
		_, err := os.Lstat(backup)
		switch {
		case err == nil && !force:
			// The user changed config.json after an earlier write: replacing
			// it would lose that change, and the backup holds an older file.
			return "", fmt.Errorf("%s: %w: it was changed after an earlier --write-config, whose backup %s still exists; move one of them away, or use --force to back up the current file over it", path, ErrBackupExists, backup)
		case err == nil || errors.Is(err, fs.ErrNotExist):
			if err := writeFileAtomic(backup, old, mode); err != nil {
				return "", fmt.Errorf("back up %s: %w", path, err)
			}
		default:
			return "", fmt.Errorf("back up %s: %w", path, err)
		}
	}
	if err := writeFileAtomic(path, data, 0o644); err != nil {
		return "", err
	}
	return backup, nil
}

func existingBackup(p string) string {
	if _, err := os.Lstat(p); err == nil {
		return p
	}
	return ""
}

// ResetMoonConfig undoes WriteMoonConfig: it restores the backup if there is
// one, or removes path if it holds exactly a config we wrote and there was
// nothing before. It reports what it did.
func ResetMoonConfig(path string) (string, error) {
	backup := backupPath(path)
	if _, err := os.Lstat(backup); err == nil {
		if err := os.Rename(backup, path); err != nil {
			return "", fmt.Errorf("restore %s: %w", backup, err)
		}
		return "restored " + path + " from " + backup, nil
	}
	cur, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%s: %w", path, ErrNothingToReset)
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if !writtenByUs(cur) {
		return "", fmt.Errorf("%s was not written by moonbit-registry (or was changed since): %w", path, ErrNothingToReset)
	}
	if err := os.Remove(path); err != nil {
		return "", fmt.Errorf("remove %s: %w", path, err)
	}
	return "removed " + path + " (there was none before)", nil
}

// MoonConfigMismatch says how the client config at path sends moon
// anywhere but baseURL, or "" when it does not (no file, or every key
// points here). While the file exists moon ignores MOONCAKES_REGISTRY
// entirely. A file that cannot be read or parsed is a mismatch (moon would
// fail on it).
func MoonConfigMismatch(path, baseURL string) string {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	if err != nil {
		return "it cannot be read: " + err.Error()
	}
	var mc moonConfig
	if err := json.Unmarshal(data, &mc); err != nil {
		return "it is not valid JSON, and moon fails on it"
	}
	// What each key must say: as either form writes it for baseURL.
	legacy, split := moonConfigFor(baseURL, MoonFormatLegacy), moonConfigFor(baseURL, MoonFormatSplit)
	var off []string
	for _, k := range []struct{ name, have, want string }{
		{"registry", mc.Registry, legacy.Registry}, {"api", mc.API, split.API}, {"index", mc.Index, legacy.Index},
		{"download", mc.Download, split.Download}, {"symbols", mc.Symbols, legacy.Symbols},
	} {
		if k.have != "" && k.have != k.want {
			off = append(off, fmt.Sprintf("%q is %s", k.name, k.have))
		}
	}
	switch {
	case len(off) > 0:
		return strings.Join(off, ", ")
	case mc.Index == "":
		return `it has no "index"`
	case mc.Registry == "" && mc.Download == "":
		return `it has neither "registry" nor "download"`
	case mc.Symbols == "" && mc.Download == "":
		return `it has no "symbols", so moon fetches symbols.zip from download.mooncakes.io`
	}
	return ""
}
