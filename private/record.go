package private

import (
	"time"

	"moonbit-registry/module"
)

// A record is what the store keeps of one private module version: its
// index line, and whether the publish that claimed it finished.
type record struct {
	State    string `json:"state"`
	Checksum string `json:"checksum"`
	// UpdatedAt is the last change (publish, deprecation, yank): the
	// served index's commit date derives from the latest.
	UpdatedAt time.Time `json:"updated_at"`
	Line      Line      `json:"line"`
}

const (
	// statePending: a publish claimed the version and is storing the
	// archive; the version is not in the index yet.
	statePending = "pending"
	// statePublished: the archive is stored and the line is served.
	statePublished = "published"
)

// recordKey is the key of mv's record: "<module>@<version>".
func recordKey(mv module.Version) string { return mv.String() }

// Line is one line of a .index file, with the fields and names the
// upstream index writes.
type Line struct {
	Name            string            `json:"name"`
	Version         string            `json:"version"`
	Deps            map[string]string `json:"deps,omitempty"`
	Readme          string            `json:"readme"`
	Repository      string            `json:"repository"`
	License         string            `json:"license"`
	Keywords        []string          `json:"keywords"`
	Description     string            `json:"description"`
	Source          string            `json:"source,omitempty"`
	PreferredTarget string            `json:"preferred-target,omitempty"`
	Checksum        string            `json:"checksum"`
	CreatedAt       string            `json:"created_at"`
	Deprecated      string            `json:"deprecated,omitempty"`
	Yanked          bool              `json:"yanked,omitempty"`
}

// createdAtLayout is how the upstream index writes created_at.
const createdAtLayout = "2006-01-02T15:04:05.000000+00:00"

func newLine(m Manifest, deps map[string]string, sum string, now time.Time) Line {
	keywords := m.Keywords
	if keywords == nil {
		keywords = []string{}
	}
	if len(deps) == 0 {
		deps = nil
	}
	return Line{
		Name:            m.Name,
		Version:         m.Version,
		Deps:            deps,
		Readme:          m.Readme,
		Repository:      m.Repository,
		License:         m.License,
		Keywords:        keywords,
		Description:     m.Description,
		Source:          m.Source,
		PreferredTarget: m.PreferredTarget,
		Checksum:        sum,
		CreatedAt:       now.UTC().Format(createdAtLayout),
	}
}
