package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"time"

	"moonbit-registry/module"
)

// Line is one line of a .index file as the registry writes it for a
// published version: the fields and names mooncakes.io writes, from the
// module's manifest, with the archive's checksum and the publish time.
type Line struct {
	Name             string            `json:"name"`
	Version          string            `json:"version"`
	Deps             map[string]string `json:"deps,omitempty"`
	Readme           string            `json:"readme"`
	Repository       string            `json:"repository"`
	License          string            `json:"license"`
	Keywords         []string          `json:"keywords"`
	Description      string            `json:"description"`
	Source           string            `json:"source,omitempty"`
	PreferredTarget  string            `json:"preferred-target,omitempty"`
	SupportedTargets json.RawMessage   `json:"supported-targets,omitempty"`
	Checksum         string            `json:"checksum"`
	CreatedAt        string            `json:"created_at"`
	Deprecated       string            `json:"deprecated,omitempty"`
	Yanked           bool              `json:"yanked,omitempty"`
}

// CreatedAtLayout is how the upstream index writes created_at.
const CreatedAtLayout = "2006-01-02T15:04:05.000000+00:00"

// NewLine is the index line of m published now with checksum sum; deps
// are m's dependencies as version requirements (name -> requirement).
func NewLine(m Module, deps map[string]string, sum string, now time.Time) Line {
	keywords := m.Keywords
	if keywords == nil {
		keywords = []string{}
	}
	if len(deps) == 0 {
		deps = nil
	}
	return Line{
		Name:             m.Name,
		Version:          m.Version,
		Deps:             deps,
		Readme:           m.Readme,
		Repository:       m.Repository,
		License:          m.License,
		Keywords:         keywords,
		Description:      m.Description,
		Source:           m.Source,
		PreferredTarget:  m.PreferredTarget,
		SupportedTargets: m.SupportedTargets,
		Checksum:         sum,
		CreatedAt:        now.UTC().Format(CreatedAtLayout),
	}
}

// Entry is one published version as an index line describes it: the
// fields the registry interprets, and the line itself.
type Entry struct {
	// Module is the module name the index file belongs to.
	Module  string
	Version string
	// Checksum is the lowercase hex SHA-256 of the archive, as published.
	Checksum string
	Deps     map[string]Dep
	// Yanked is set when the line carries "yanked": true, YankedReason
	// with its "yanked_reason".
	Yanked       bool
	YankedReason string
	// Deprecated is the line's "deprecated" reason ("deprecated" for
	// true), empty when none. The client's resolver ignores it (and
	// Yanked): both can still be selected.
	Deprecated string
	// What the line says of the module, for search and the web page;
	// empty when absent or of another type.
	Description, License, Repository, CreatedAt string
	Keywords                                    []string
	// Raw is the whole line, untouched, for passing through.
	Raw json.RawMessage
}

// Archive names the archive the line describes.
func (e Entry) Archive() module.Version { return module.Version{Module: e.Module, Version: e.Version} }

// ParseLine reads one line of module mod's .index file. A line that is
// not a JSON object, has no valid semver version or a dependency of
// neither form is an error: the client could not use it. Descriptive
// fields of another type are left empty.
func ParseLine(mod string, line []byte) (Entry, error) {
	var l struct {
		Version  *string        `json:"version"`
		Checksum string         `json:"checksum"`
		Deps     map[string]Dep `json:"deps"`

		Yanked       json.RawMessage `json:"yanked"`
		YankedReason json.RawMessage `json:"yanked_reason"`
		Deprecated   json.RawMessage `json:"deprecated"`
		Description  json.RawMessage `json:"description"`
		License      json.RawMessage `json:"license"`
		Repository   json.RawMessage `json:"repository"`
		CreatedAt    json.RawMessage `json:"created_at"`
		Keywords     json.RawMessage `json:"keywords"`
	}
	if err := json.Unmarshal(line, &l); err != nil {
		return Entry{}, err
	}
	if l.Version == nil {
		return Entry{}, errors.New("no version")
	}
	if err := module.ValidateVersion(*l.Version); err != nil {
		return Entry{}, err
	}
	e := Entry{
		Module:       mod,
		Version:      *l.Version,
		Checksum:     l.Checksum,
		Deps:         l.Deps,
		Yanked:       bytes.Equal(bytes.TrimSpace(l.Yanked), []byte("true")),
		YankedReason: lenient[string](l.YankedReason),
		Deprecated:   lenient[string](l.Deprecated),
		Description:  lenient[string](l.Description),
		License:      lenient[string](l.License),
		Repository:   lenient[string](l.Repository),
		CreatedAt:    lenient[string](l.CreatedAt),
		Keywords:     lenient[[]string](l.Keywords),
		Raw:          json.RawMessage(bytes.Clone(line)),
	}
	if e.Deprecated == "" && bytes.Equal(bytes.TrimSpace(l.Deprecated), []byte("true")) {
		e.Deprecated = "deprecated"
	}
	return e, nil
}

// lenient decodes raw as a T, or gives T's zero value.
func lenient[T any](raw json.RawMessage) T {
	var v T
	if len(raw) > 0 && json.Unmarshal(raw, &v) != nil {
		var zero T
		return zero
	}
	return v
}
