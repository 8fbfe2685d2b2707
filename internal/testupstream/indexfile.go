package testupstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// versionInfo is what the upstream needs from one index line. A later line
// for the same version overrides an earlier one, as the client does it.
type versionInfo struct {
	deps        json.RawMessage
	binDeps     json.RawMessage // followed by SubsetIndex only
	description string
}

// moduleInfo is one module of the index: its file and its versions.
type moduleInfo struct {
	name     string
	file     string   // slash path inside the index, "user/<owner>/<rest>.index"
	versions []string // in first-seen order, without duplicates
	info     map[string]versionInfo
}

func (m *moduleInfo) add(version string, vi versionInfo) {
	if _, ok := m.info[version]; !ok {
		m.versions = append(m.versions, version)
	}
	m.info[version] = vi
}

// indexLine holds the fields read from one JSON line of an .index file.
type indexLine struct {
	Version     string          `json:"version"`
	Deps        json.RawMessage `json:"deps"`
	BinDeps     json.RawMessage `json:"bin-deps"`
	Description string          `json:"description"`
}

// moduleFromFile turns "user/<owner>/<rest>.index" into "<owner>/<rest>".
func moduleFromFile(rel string) (string, bool) {
	if !strings.HasPrefix(rel, "user/") || !strings.HasSuffix(rel, ".index") {
		return "", false
	}
	name := strings.TrimSuffix(strings.TrimPrefix(rel, "user/"), ".index")
	if !strings.Contains(name, "/") {
		return "", false
	}
	return name, true
}

// fileForModule is the inverse of moduleFromFile.
func fileForModule(module string) string {
	return "user/" + module + ".index"
}

// validModule rejects names that would escape the index tree or that the
// layout cannot represent.
func validModule(module string) error {
	parts := strings.Split(module, "/")
	if len(parts) < 2 {
		return fmt.Errorf("module %q: want <owner>/<name>", module)
	}
	for _, p := range parts {
		if p == "" || p == "." || p == ".." || strings.ContainsAny(p, "\\\x00\n\r") {
			return fmt.Errorf("module %q: bad path segment %q", module, p)
		}
	}
	return nil
}

// validVersion rejects versions that cannot sit in an archive URL.
func validVersion(version string) error {
	if version == "" || version == AllVersions || strings.ContainsAny(version, "/\\ \t\n\r\x00") {
		return fmt.Errorf("bad version %q", version)
	}
	return nil
}

// splitLines splits b into lines that keep their "\n", so joining them
// gives b back byte for byte.
func splitLines(b []byte) [][]byte {
	var lines [][]byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			lines = append(lines, b)
			break
		}
		lines = append(lines, b[:i+1])
		b = b[i+1:]
	}
	return lines
}

// parseLine reads the fields the upstream needs from one index line; blank
// lines give ok == false.
func parseLine(line []byte) (indexLine, bool, error) {
	if len(bytes.TrimSpace(line)) == 0 {
		return indexLine{}, false, nil
	}
	var l indexLine
	if err := json.Unmarshal(line, &l); err != nil {
		return indexLine{}, false, fmt.Errorf("parse index line: %w", err)
	}
	if l.Version == "" {
		return indexLine{}, false, errors.New("index line without version")
	}
	return l, true, nil
}

// rewriteChecksum returns line with the top-level "checksum" value set to
// sum. Only the value's bytes change, so the rest of the line (field order,
// spacing, escapes) stays exactly as published. A line without a checksum
// gets one appended as the last field.
func rewriteChecksum(line []byte, sum string) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("rewrite checksum: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("rewrite checksum: line is not a JSON object")
	}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("rewrite checksum: %w", err)
		}
		key, _ := kt.(string)
		start := dec.InputOffset() // just after the key
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("rewrite checksum: %w", err)
		}
		end := dec.InputOffset() // just after the value
		if key != "checksum" {
			continue
		}
		seg := line[start:end] // `: "..."`, spacing as published
		i := bytes.IndexByte(seg, '"')
		j := bytes.LastIndexByte(seg, '"')
		out := make([]byte, 0, len(line)+len(sum))
		if len(raw) > 0 && raw[0] == '"' && i >= 0 && j > i {
			out = append(out, line[:start+int64(i)+1]...)
			out = append(out, sum...)
			out = append(out, line[start+int64(j):]...)
		} else {
			out = append(out, line[:start]...)
			out = append(out, `: "`+sum+`"`...)
			out = append(out, line[end:]...)
		}
		return out, nil
	}
	// No checksum field: add one before the closing brace.
	body := bytes.TrimRight(line, " \t\r\n")
	tail := line[len(body):]
	if len(body) == 0 || body[len(body)-1] != '}' {
		return nil, errors.New("rewrite checksum: line does not end with }")
	}
	inner := bytes.TrimSpace(body[1 : len(body)-1])
	out := make([]byte, 0, len(line)+len(sum)+16)
	out = append(out, body[:len(body)-1]...)
	if len(inner) > 0 {
		out = append(out, ", "...)
	}
	out = append(out, `"checksum": "`+sum+`"}`...)
	out = append(out, tail...)
	return out, nil
}

// loadIndex reads every .index file under src into memory, keyed by slash
// path relative to src. Hidden directories (such as .git of a checkout) are
// skipped; other files are kept so the copy is faithful.
func loadIndex(src string) (map[string][]byte, error) {
	files := map[string][]byte{}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != src && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = b
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read index %s: %w", src, err)
	}
	return files, nil
}

// parseModules builds the module table from the loaded index files.
func parseModules(files map[string][]byte) (map[string]*moduleInfo, error) {
	mods := map[string]*moduleInfo{}
	for rel, b := range files {
		name, ok := moduleFromFile(rel)
		if !ok {
			continue
		}
		m := &moduleInfo{name: name, file: rel, info: map[string]versionInfo{}}
		for n, line := range splitLines(b) {
			l, ok, err := parseLine(line)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %w", rel, n+1, err)
			}
			if ok {
				m.add(l.Version, versionInfo{deps: l.Deps, binDeps: l.BinDeps, description: l.Description})
			}
		}
		mods[name] = m
	}
	return mods, nil
}

// rewriteFile sets the checksum of every line whose version is in sums.
func rewriteFile(b []byte, sums map[string]string) ([]byte, error) {
	var out bytes.Buffer
	out.Grow(len(b) + 64)
	for n, line := range splitLines(b) {
		l, ok, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
		if sum, hit := sums[l.Version]; ok && hit {
			line, err = rewriteChecksum(line, sum)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n+1, err)
			}
		}
		out.Write(line)
	}
	return out.Bytes(), nil
}
