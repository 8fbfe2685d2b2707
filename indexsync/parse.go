package indexsync

import (
	"bytes"
	"encoding/json"
	"fmt"

	"moonbit-registry/manifest"
	"moonbit-registry/module"

	"github.com/rs/zerolog"
)

// Version is one published version of a module, as its index line says.
type Version struct {
	// Module is the module name the index file belongs to.
	Module  string
	Version string
	// Checksum is the lowercase hex SHA-256 of the archive, as published.
	Checksum string
	Deps     map[string]Dep
	// Yanked is set when the line carries "yanked": true.
	Yanked bool
	// Deprecated is the line's "deprecated" reason, empty when none. The
	// client's resolver ignores it (and Yanked): both can still be selected.
	Deprecated string
	// Raw is the whole line, untouched, for passing through.
	Raw json.RawMessage
}

// Archive names the archive the line describes.
func (v Version) Archive() module.Version {
	return module.Version{Module: v.Module, Version: v.Version}
}

// Dep is one dependency, as the index model reads it.
type Dep = manifest.Dep

// indexLine holds the fields of a line the mirror interprets.
type indexLine struct {
	Version  *string         `json:"version"`
	Checksum string          `json:"checksum"`
	Deps     map[string]Dep  `json:"deps"`
	Yanked   json.RawMessage `json:"yanked"`
	// Deprecated is a reason string; any other JSON value is ignored.
	Deprecated json.RawMessage `json:"deprecated"`
}

// parseIndex parses a module's .index file. Versions come oldest first in
// order of first appearance (the file is append-only, oldest first); a later
// line for the same version replaces the earlier one in place. Lines that
// are not JSON objects or carry no valid semver version are skipped with a
// warning, as the moon client would be unable to use them.
func parseIndex(mod string, data []byte, log zerolog.Logger) []Version {
	var out []Version
	pos := map[string]int{}
	for n, line := range bytes.Split(data, []byte{'\n'}) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		v, err := parseLine(mod, line)
		if err != nil {
			log.Warn().Str("module", mod).Int("line", n+1).Err(err).Msg("skipping malformed index line")
			continue
		}
		if i, ok := pos[v.Version]; ok {
			out[i] = v
			continue
		}
		pos[v.Version] = len(out)
		out = append(out, v)
	}
	return out
}

func parseLine(mod string, line []byte) (Version, error) {
	var l indexLine
	if err := json.Unmarshal(line, &l); err != nil {
		return Version{}, err
	}
	if l.Version == nil {
		return Version{}, fmt.Errorf("no version")
	}
	if err := module.ValidateVersion(*l.Version); err != nil {
		return Version{}, err
	}
	return Version{
		Module:     mod,
		Version:    *l.Version,
		Checksum:   l.Checksum,
		Deps:       l.Deps,
		Yanked:     bytes.Equal(bytes.TrimSpace(l.Yanked), []byte("true")),
		Deprecated: deprecation(l.Deprecated),
		Raw:        json.RawMessage(bytes.Clone(line)),
	}, nil
}

// deprecation is the reason a "deprecated" field gives: its string, or
// "deprecated" for true; "" when absent, false or anything else.
func deprecation(raw json.RawMessage) string {
	var reason string
	if json.Unmarshal(raw, &reason) == nil {
		return reason
	}
	if bytes.Equal(bytes.TrimSpace(raw), []byte("true")) {
		return "deprecated"
	}
	return ""
}
