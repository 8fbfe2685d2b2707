package private

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"path"
	"strings"

	"moonbit-registry/module"
)

// Limits on what a published archive may hold. Clients unpack what we
// serve, so an archive is refused unless every entry is a plain file or
// directory with a relative path inside the archive, and the whole
// unpacks to a bounded size.
const (
	// DefaultMaxArchiveSize is the largest archive publish takes (the
	// config's private.max_archive_size): the largest archive on
	// mooncakes.io is a few MiB.
	DefaultMaxArchiveSize = 32 << 20
	// maxUnpackedSize bounds the sum of the entries' sizes: a zip bomb
	// unpacks to far more.
	maxUnpackedSize = 256 << 20
	maxEntries      = 50_000
	// maxManifest bounds moon.mod.json.
	maxManifest = 1 << 20
)

// manifestName is the module description every archive has at its root.
const manifestName = "moon.mod.json"

// Manifest is what publish reads from an archive's moon.mod.json.
type Manifest struct {
	Name            string                     `json:"name"`
	Version         string                     `json:"version"`
	Deps            map[string]json.RawMessage `json:"deps"`
	Readme          string                     `json:"readme"`
	Repository      string                     `json:"repository"`
	License         string                     `json:"license"`
	Keywords        []string                   `json:"keywords"`
	Description     string                     `json:"description"`
	Source          string                     `json:"source"`
	PreferredTarget string                     `json:"preferred-target"`
}

// Archive returns the module version the manifest names.
func (m Manifest) Archive() module.Version {
	return module.Version{Module: m.Name, Version: m.Version}
}

// InspectArchive checks a zip made by `moon package` (size bytes readable
// from r) and returns its manifest with the dependencies as the index
// writes them (name -> version requirement). Every refusal wraps
// ErrInvalid and says what is wrong.
func InspectArchive(r io.ReaderAt, size int64) (Manifest, map[string]string, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return Manifest{}, nil, invalid("not a zip archive: %v", err)
	}
	if len(zr.File) > maxEntries {
		return Manifest{}, nil, invalid("%d entries; at most %d are taken", len(zr.File), maxEntries)
	}
	var (
		unpacked uint64
		manifest *zip.File
		seen     = make(map[string]bool, len(zr.File))
	)
	for _, f := range zr.File {
		if err := checkEntryName(f.Name); err != nil {
			return Manifest{}, nil, err
		}
		key := strings.TrimSuffix(f.Name, "/")
		if seen[key] {
			return Manifest{}, nil, invalid("entry %q appears twice", f.Name)
		}
		seen[key] = true
		mode := f.Mode()
		if mode&fs.ModeSymlink != 0 {
			return Manifest{}, nil, invalid("entry %q is a symbolic link; only files and directories are taken", f.Name)
		}
		if !mode.IsRegular() && !mode.IsDir() {
			return Manifest{}, nil, invalid("entry %q is not a plain file or directory (mode %v)", f.Name, mode)
		}
		unpacked += f.UncompressedSize64
		if unpacked > maxUnpackedSize {
			return Manifest{}, nil, invalid("unpacks to more than %d MiB", maxUnpackedSize>>20)
		}
		if f.Name == manifestName {
			manifest = f
		}
	}
	// Read every entry: archive/zip checks each one's CRC and that it does
	// not unpack to more than its header says, so a lying header or a
	// damaged entry is caught here rather than on a client.
	for _, f := range zr.File {
		if err := readEntry(f, io.Discard); err != nil {
			return Manifest{}, nil, err
		}
	}
	if manifest == nil {
		return Manifest{}, nil, invalid("no %s at the archive's root (make the archive with `moon package`)", manifestName)
	}
	if manifest.UncompressedSize64 > maxManifest {
		return Manifest{}, nil, invalid("%s is larger than %d KiB", manifestName, maxManifest>>10)
	}
	var buf bytes.Buffer
	if err := readEntry(manifest, &buf); err != nil {
		return Manifest{}, nil, err
	}
	return ParseManifest(buf.Bytes())
}

// ParseManifest reads and checks a moon.mod.json: name and version by the
// module grammar, every dependency a registry module with a version
// requirement (a path or git dependency cannot be resolved by clients of
// the registry).
func ParseManifest(data []byte) (Manifest, map[string]string, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return Manifest{}, nil, invalid("%s is not valid JSON: %v", manifestName, err)
	}
	if m.Name == "" {
		return Manifest{}, nil, invalid("%s has no \"name\"", manifestName)
	}
	if m.Version == "" {
		return Manifest{}, nil, invalid("%s has no \"version\"; a published module needs one", manifestName)
	}
	if err := m.Archive().Validate(); err != nil {
		return Manifest{}, nil, invalid("%s: %v", manifestName, err)
	}
	deps := make(map[string]string, len(m.Deps))
	for name, raw := range m.Deps {
		if err := module.ValidateModule(name); err != nil {
			return Manifest{}, nil, invalid("%s: dependency %q: %v", manifestName, name, err)
		}
		req, err := depRequirement(raw)
		if err != nil {
			return Manifest{}, nil, invalid("%s: dependency %q: %v", manifestName, name, err)
		}
		if _, err := module.ParseRequirement(req); err != nil {
			return Manifest{}, nil, invalid("%s: dependency %q: %v", manifestName, name, err)
		}
		deps[name] = req
	}
	return m, deps, nil
}

// depRequirement is a dependency's version requirement: the string itself,
// or the "version" of the object form.
func depRequirement(raw json.RawMessage) (string, error) {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return "", errors.New("null is not a version requirement")
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var obj struct {
		Version *string `json:"version"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return "", errors.New("neither a version string nor an object")
	}
	if obj.Version == nil {
		return "", errors.New("a path or git dependency without a version cannot be published")
	}
	return *obj.Version, nil
}

// checkEntryName refuses names that unpack outside the target directory or
// mean different things on different systems.
func checkEntryName(name string) error {
	switch {
	case name == "" || strings.ContainsRune(name, 0):
		return invalid("an entry has an empty or NUL-bearing name")
	case strings.ContainsRune(name, '\\'):
		return invalid("entry %q has a backslash; archive paths use '/'", name)
	case strings.HasPrefix(name, "/") || (len(name) >= 2 && name[1] == ':'):
		return invalid("entry %q has an absolute path", name)
	}
	for _, seg := range strings.Split(strings.TrimSuffix(name, "/"), "/") {
		if seg == "" || seg == "." || seg == ".." {
			return invalid("entry %q has an empty, '.' or '..' path segment", name)
		}
	}
	if path.Clean(name) != strings.TrimSuffix(name, "/") {
		return invalid("entry %q is not a clean path", name)
	}
	return nil
}

// readEntry copies an entry to w, bounded by the unpack limit.
func readEntry(f *zip.File, w io.Writer) error {
	if f.Mode().IsDir() {
		return nil
	}
	rc, err := f.Open()
	if err != nil {
		return invalid("entry %q cannot be read: %v", f.Name, err)
	}
	defer rc.Close()
	n, err := io.Copy(w, io.LimitReader(rc, maxUnpackedSize+1))
	if err != nil {
		return invalid("entry %q is damaged: %v", f.Name, err)
	}
	if n > maxUnpackedSize {
		return invalid("entry %q unpacks to more than %d MiB", f.Name, maxUnpackedSize>>20)
	}
	return nil
}
