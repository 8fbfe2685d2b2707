package manifest

import (
	"encoding/json"
	"time"
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
