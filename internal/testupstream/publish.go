package testupstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"
)

// AddVersion publishes module@version while the upstream runs: it builds
// and serves the version's zip, appends its line (with that zip's checksum)
// to the module's .index file, creating the file for a new module, and
// commits on main as a fast-forward. deps maps module names to version
// requirements and may be nil. Publishing an existing version is an error.
func (ix *Index) AddVersion(ctx context.Context, module, version string, deps map[string]string) error {
	if err := validModule(module); err != nil {
		return fmt.Errorf("add version: %w", err)
	}
	if err := validVersion(version); err != nil {
		return fmt.Errorf("add version %s: %w", module, err)
	}
	ix.gitMu.Lock()
	defer ix.gitMu.Unlock()

	exists := ix.downloads.has(module, version)
	ix.mu.RLock()
	if m := ix.modules[module]; m != nil {
		_, ok := m.info[version]
		exists = exists || ok
	}
	ix.mu.RUnlock()
	if exists {
		return fmt.Errorf("add version: %s@%s is already published", module, version)
	}

	var rawDeps json.RawMessage
	if len(deps) > 0 {
		b, err := marshalNoEscape(deps) // map keys come out sorted
		if err != nil {
			return fmt.Errorf("add version %s@%s: %w", module, version, err)
		}
		rawDeps = b
	}
	a, err := ix.downloads.build(module, version, rawDeps)
	if err != nil {
		return fmt.Errorf("add version: %w", err)
	}
	created := commitEpoch().Add(time.Duration(ix.repo.commits) * time.Minute)
	line, err := newIndexLine(module, version, deps, a.sum, created)
	if err != nil {
		return fmt.Errorf("add version %s@%s: %w", module, version, err)
	}

	// The archive goes up before the index line, as on the real registry:
	// a client that sees the version can always fetch it.
	ix.downloads.put(module, version, a)

	if err := ix.appendLine(ctx, module, line, "Publish "+module+"@"+version); err != nil {
		return err
	}
	ix.addVersionInfo(module, version, versionInfo{deps: rawDeps})
	return nil
}

// AddVersionRaw appends line verbatim (a newline is added) to module's
// .index file and commits it on main, without building an archive. It is
// for publishing lines AddVersion would not write: yanked markers, odd
// deps, invalid versions, overrides of an existing version.
func (ix *Index) AddVersionRaw(ctx context.Context, module string, line []byte) error {
	if err := validModule(module); err != nil {
		return fmt.Errorf("add raw line: %w", err)
	}
	line = bytes.TrimRight(line, "\r\n")
	if bytes.ContainsAny(line, "\r\n") {
		return errors.New("add raw line: line contains a newline")
	}
	line = append(append([]byte(nil), line...), '\n')
	ix.gitMu.Lock()
	defer ix.gitMu.Unlock()
	if err := ix.appendLine(ctx, module, line, "Append a line to "+module); err != nil {
		return err
	}
	// Lines that parse show up in Versions and search; others only in git.
	if l, ok, err := parseLine(line); err == nil && ok {
		ix.addVersionInfo(module, l.Version, versionInfo{deps: l.Deps, description: l.Description})
	}
	return nil
}

// RewriteHistory replaces main with a single new root commit holding the
// current index tree, as a force-push of the upstream would. Clients that
// pull afterwards see unrelated histories and must re-clone.
func (ix *Index) RewriteHistory(ctx context.Context) error {
	ix.gitMu.Lock()
	defer ix.gitMu.Unlock()
	if _, err := ix.repo.rewrite(ctx, "Rewrite index history"); err != nil {
		return fmt.Errorf("rewrite history: %w", err)
	}
	return nil
}

// appendLine appends line to module's index file and commits. Callers hold
// gitMu, which also keeps ix.files stable between the read and the write.
func (ix *Index) appendLine(ctx context.Context, module string, line []byte, msg string) error {
	file := fileForModule(module)
	ix.mu.RLock()
	old := ix.files[file]
	ix.mu.RUnlock()
	content := make([]byte, 0, len(old)+len(line)+1)
	content = append(content, old...)
	// Keep one object per line even if the file lacks its last newline.
	if len(old) > 0 && old[len(old)-1] != '\n' {
		content = append(content, '\n')
	}
	content = append(content, line...)
	if _, err := ix.repo.commitFiles(ctx, map[string][]byte{file: content}, msg, false); err != nil {
		return fmt.Errorf("append to index: %w", err)
	}
	ix.mu.Lock()
	ix.files[file] = content
	ix.mu.Unlock()
	return nil
}

// addVersionInfo records version of module in the module table, creating
// the module's entry.
func (ix *Index) addVersionInfo(module, version string, vi versionInfo) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	m, ok := ix.modules[module]
	if !ok {
		m = &moduleInfo{name: module, file: fileForModule(module), info: map[string]versionInfo{}}
		ix.modules[module] = m
	}
	m.add(version, vi)
}

// newIndexLine writes a line in the snapshot's style (", " and ": "
// separators, checksum before created_at).
func newIndexLine(module, version string, deps map[string]string, sum string, created time.Time) ([]byte, error) {
	var b bytes.Buffer
	field := func(key string, raw []byte) error {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		k, err := marshalNoEscape(key)
		if err != nil {
			return err
		}
		b.Write(k)
		b.WriteString(": ")
		b.Write(raw)
		return nil
	}
	str := func(key, val string) error {
		v, err := marshalNoEscape(val)
		if err != nil {
			return err
		}
		return field(key, v)
	}
	if err := str("name", module); err != nil {
		return nil, err
	}
	if err := str("version", version); err != nil {
		return nil, err
	}
	if len(deps) > 0 {
		names := make([]string, 0, len(deps))
		for k := range deps {
			names = append(names, k)
		}
		sort.Strings(names)
		var d bytes.Buffer
		d.WriteByte('{')
		for i, k := range names {
			if i > 0 {
				d.WriteString(", ")
			}
			kb, err := marshalNoEscape(k)
			if err != nil {
				return nil, err
			}
			vb, err := marshalNoEscape(deps[k])
			if err != nil {
				return nil, err
			}
			d.Write(kb)
			d.WriteString(": ")
			d.Write(vb)
		}
		d.WriteByte('}')
		if err := field("deps", d.Bytes()); err != nil {
			return nil, err
		}
	}
	if err := str("checksum", sum); err != nil {
		return nil, err
	}
	if err := str("created_at", created.UTC().Format("2006-01-02T15:04:05.000000+00:00")); err != nil {
		return nil, err
	}
	return []byte("{" + b.String() + "}\n"), nil
}

// marshalNoEscape is json.Marshal without HTML escaping, so names with <,
// > or & stay readable as they would in the real index.
func marshalNoEscape(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
