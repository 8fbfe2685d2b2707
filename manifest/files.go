package manifest

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// maxFileSize bounds a manifest read from disk or from an archive.
const maxFileSize = 1 << 20

// Parse reads a manifest by its file name: moon.mod or moon.mod.json.
func Parse(name string, data []byte) (Module, error) {
	if len(data) > maxFileSize {
		return Module{}, invalidf("%s is larger than %d KiB", name, maxFileSize>>10)
	}
	switch name {
	case DSLFile:
		return ParseDSL(data)
	case JSONFile:
		return ParseJSON(data)
	}
	return Module{}, invalidf("%s is neither %s nor %s", name, DSLFile, JSONFile)
}

// Preferred picks the manifest moon reads when a directory or archive
// holds both: moon.mod (moonutil/src/manifest.rs,
// preferred_manifest_in_dir); has reports whether a name is present.
func Preferred(has func(name string) bool) (string, bool) {
	for _, name := range []string{DSLFile, JSONFile} {
		if has(name) {
			return name, true
		}
	}
	return "", false
}

// ReadDir reads the manifest of the module in dir, as moon picks it, and
// returns it with the path it was read from. A directory with neither
// file wraps fs.ErrNotExist.
func ReadDir(dir string) (Module, string, error) {
	name, ok := Preferred(func(name string) bool {
		fi, err := os.Stat(filepath.Join(dir, name))
		return err == nil && fi.Mode().IsRegular()
	})
	if !ok {
		return Module{}, "", fmt.Errorf("%s has neither %s nor %s: %w", dir, DSLFile, JSONFile, fs.ErrNotExist)
	}
	path := filepath.Join(dir, name)
	data, err := readBounded(path)
	if err != nil {
		return Module{}, path, err
	}
	m, err := Parse(name, data)
	if err != nil {
		return Module{}, path, fmt.Errorf("%s: %w", path, err)
	}
	return m, path, nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxFileSize+1)) // Parse refuses more
}
