package private

import (
	"time"

	"moonbit-registry/manifest"
	"moonbit-registry/module"
)

// A record is what the store keeps of one private module version: its
// index line, and whether the publish that claimed it finished.
type record struct {
	State    string `json:"state"`
	Checksum string `json:"checksum"`
	// UpdatedAt is the last change (publish, deprecation, yank): the
	// served index's commit date derives from the latest.
	UpdatedAt time.Time     `json:"updated_at"`
	Line      manifest.Line `json:"line"`
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
