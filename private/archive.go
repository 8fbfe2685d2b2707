package private

import (
	"archive/zip"
	"bytes"
	"io"
	"io/fs"
	"path"
	"strings"
	"unicode/utf8"

	"moonbit-registry/manifest"
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
	// maxManifest bounds moon.mod and moon.mod.json.
	maxManifest = 1 << 20
)

// InspectArchive checks a zip made by `moon package` (size bytes readable
// from r) and returns its manifest (moon.mod, else moon.mod.json, at the
// root: the one moon reads) with the dependencies as the index writes them
// (name -> version requirement). Every refusal wraps ErrInvalid and says
// what is wrong.
func InspectArchive(r io.ReaderAt, size int64) (manifest.Module, map[string]string, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return manifest.Module{}, nil, invalid("not a zip archive: %v", err)
	}
	if len(zr.File) > maxEntries {
		return manifest.Module{}, nil, invalid("%d entries; at most %d are taken", len(zr.File), maxEntries)
	}
	if err := checkLayout(r, size, zr); err != nil {
		return manifest.Module{}, nil, err
	}
	var (
		unpacked uint64
		atRoot   = map[string]*zip.File{}                // the manifests moon may read
		seen     = make(map[string]string, len(zr.File)) // folded name -> name
		files    = map[string]string{}                   // the same, of files only
	)
	for _, f := range zr.File {
		if err := checkEntryName(f.Name); err != nil {
			return manifest.Module{}, nil, err
		}
		// Names are compared folded: clients on macOS and Windows keep
		// src/A.mbt and src/a.mbt in one file.
		key := strings.ToLower(strings.TrimSuffix(f.Name, "/"))
		if first, dup := seen[key]; dup {
			if strings.TrimSuffix(first, "/") == strings.TrimSuffix(f.Name, "/") {
				return manifest.Module{}, nil, invalid("entry %q appears twice", f.Name)
			}
			return manifest.Module{}, nil, invalid("entries %q and %q differ only in case (one file on macOS and Windows)", first, f.Name)
		}
		seen[key] = f.Name
		if !f.Mode().IsDir() {
			files[key] = f.Name
		}
		mode := f.Mode()
		if mode&fs.ModeSymlink != 0 {
			return manifest.Module{}, nil, invalid("entry %q is a symbolic link; only files and directories are taken", f.Name)
		}
		if !mode.IsRegular() && !mode.IsDir() {
			return manifest.Module{}, nil, invalid("entry %q is not a plain file or directory (mode %v)", f.Name, mode)
		}
		unpacked += f.UncompressedSize64
		if unpacked > maxUnpackedSize {
			return manifest.Module{}, nil, invalid("unpacks to more than %d MiB", maxUnpackedSize>>20)
		}
		if f.Name == manifest.DSLFile || f.Name == manifest.JSONFile {
			atRoot[f.Name] = f
		}
	}
	if err := checkDirs(seen, files); err != nil {
		return manifest.Module{}, nil, err
	}
	// Read every entry: archive/zip checks each one's CRC and that it does
	// not unpack to more than its header says, so a lying header or a
	// damaged entry is caught here rather than on a client.
	for _, f := range zr.File {
		if err := readEntry(f, io.Discard); err != nil {
			return manifest.Module{}, nil, err
		}
	}
	name, ok := manifest.Preferred(func(name string) bool { return atRoot[name] != nil })
	if !ok {
		return manifest.Module{}, nil, invalid("no %s or %s at the archive's root (make the archive with `moon package`)", manifest.DSLFile, manifest.JSONFile)
	}
	if atRoot[name].UncompressedSize64 > maxManifest {
		return manifest.Module{}, nil, invalid("%s is larger than %d KiB", name, maxManifest>>10)
	}
	var buf bytes.Buffer
	if err := readEntry(atRoot[name], &buf); err != nil {
		return manifest.Module{}, nil, err
	}
	return ParseManifest(name, buf.Bytes())
}

// ParseManifest reads a manifest by its file name (moon.mod or
// moon.mod.json) and checks it for publishing: name and version by the
// module grammar, every dependency a registry module with a version
// requirement (a path or git dependency cannot be resolved by clients of
// the registry). It returns the dependencies as requirements.
func ParseManifest(name string, data []byte) (manifest.Module, map[string]string, error) {
	m, err := manifest.Parse(name, data)
	if err != nil {
		return manifest.Module{}, nil, invalid("%v", err)
	}
	if m.Version == "" {
		return manifest.Module{}, nil, invalid("%s has no \"version\"; a published module needs one", name)
	}
	if err := m.Archive().Validate(); err != nil {
		return manifest.Module{}, nil, invalid("%s: %v", name, err)
	}
	deps := make(map[string]string, len(m.Deps))
	for dep, d := range m.Deps {
		if err := module.ValidateModule(dep); err != nil {
			return manifest.Module{}, nil, invalid("%s: dependency %q: %v", name, dep, err)
		}
		if d.Version == "" {
			return manifest.Module{}, nil, invalid("%s: dependency %q: a path or git dependency without a version cannot be published", name, dep)
		}
		if _, err := module.ParseRequirement(d.Version); err != nil {
			return manifest.Module{}, nil, invalid("%s: dependency %q: %v", name, dep, err)
		}
		deps[dep] = d.Version
	}
	return m, deps, nil
}

// checkDirs checks the directories the entries make (seen: every entry
// by its folded name; files: the files among them): a file is no
// directory ("moon.mod.json" and "moon.mod.json/x"), and a directory is
// spelled one way ("Src/a.mbt" and "src/b.mbt" are one directory on macOS
// and Windows). Each directory is looked at once: a walk up from an entry
// stops at the first directory already seen, whose own walk checked the
// rest.
func checkDirs(seen, files map[string]string) error {
	dirs := map[string]string{} // folded -> as spelled
	for folded, name := range seen {
		name = strings.TrimSuffix(name, "/")
		dir, key := name, folded // an explicit directory entry starts at itself
		if !strings.HasSuffix(seen[folded], "/") {
			dir, key = parent(name), parent(folded)
		}
		for dir != "" {
			if file, ok := files[key]; ok && file != seen[folded] {
				return invalid("entry %q is inside %q, which is a file", name, file)
			}
			if other, ok := dirs[key]; ok {
				if other != dir {
					return invalid("directories %q and %q differ only in case (one directory on macOS and Windows)", other, dir)
				}
				break
			}
			dirs[key] = dir
			dir, key = parent(dir), parent(key)
		}
	}
	return nil
}

// parent is the directory part of a slash-separated path, "" at the top.
// Case folding keeps every '/' where it was, counted from the end, so the
// parent of a folded name is the folded parent.
func parent(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ""
	}
	return p[:i]
}

// Bounds on an entry's name: longer or deeper paths are no source tree,
// and checking their directories costs in proportion.
const (
	maxEntryNameLen = 512
	maxEntryDepth   = 32
)

// checkEntryName refuses names that unpack outside the target directory or
// mean different things on different systems.
func checkEntryName(name string) error {
	switch {
	case name == "" || strings.ContainsRune(name, 0):
		return invalid("an entry has an empty or NUL-bearing name")
	case len(name) > maxEntryNameLen:
		return invalid("entry %.60q... has a name of %d bytes; at most %d are taken", name, len(name), maxEntryNameLen)
	case strings.Count(strings.TrimSuffix(name, "/"), "/") >= maxEntryDepth:
		return invalid("entry %.60q... is nested deeper than %d directories", name, maxEntryDepth)
	case !utf8.ValidString(name):
		// Overlong forms such as \xc0\xae ('.') would pass the checks
		// below and be read otherwise by a lenient unzip.
		return invalid("entry %q is not valid UTF-8", name)
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
