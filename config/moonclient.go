package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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

// moonConfig is the legacy client config form, which old and new clients
// both read.
type moonConfig struct {
	Registry string `json:"registry"`
	Index    string `json:"index"`
	Symbols  string `json:"symbols"`
}

func moonConfigFor(baseURL string) moonConfig {
	return moonConfig{Registry: baseURL, Index: baseURL + "/git/index", Symbols: baseURL + "/symbols.zip"}
}

func encodeMoonConfig(mc moonConfig) []byte {
	data, _ := json.MarshalIndent(mc, "", "  ") // three strings: cannot fail
	return append(data, '\n')
}

// writtenByUs tells whether data is exactly what WriteMoonConfig writes for
// some base URL, byte for byte.
func writtenByUs(data []byte) bool {
	var mc moonConfig
	if json.Unmarshal(data, &mc) != nil || mc.Registry == "" {
		return false
	}
	return bytes.Equal(data, encodeMoonConfig(moonConfigFor(mc.Registry)))
}

// backupPath is where the file that WriteMoonConfig replaced is kept.
func backupPath(path string) string { return path + ".moonbit-registry.bak" }

// WriteMoonConfig points the moon client at baseURL by writing path. An
// existing file is copied to a backup first (an existing backup, the
// original, is kept). An unreadable or malformed existing file is an error
// unless force is set. It returns the backup's path, or "" if there was no
// file before.
func WriteMoonConfig(path, baseURL string, force bool) (string, error) {
	old, err := os.ReadFile(path)
	existed := err == nil
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil && !force:
		return "", fmt.Errorf("%s: %w: %v (use --force to replace it)", path, ErrMoonConfigUnusable, err)
	case err == nil && !json.Valid(old) && !force:
		return "", fmt.Errorf("%s: %w: not valid JSON (use --force to replace it)", path, ErrMoonConfigUnusable)
	}
	data := encodeMoonConfig(moonConfigFor(baseURL))
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

// MoonConfigOverrides reports whether the client config at path exists and
// points moon somewhere other than baseURL: then moon ignores
// MOONCAKES_REGISTRY entirely. A file that cannot be read or parsed counts
// as overriding (moon would fail on it).
func MoonConfigOverrides(path, baseURL string) bool {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	var mc moonConfig
	if err != nil || json.Unmarshal(data, &mc) != nil {
		return true
	}
	return mc.Registry != baseURL
}
