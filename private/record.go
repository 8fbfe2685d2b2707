package private

import (
	"strings"
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

// recordKey is the key of mv's record: "<module>@<version>" without the
// version's build metadata. Versions that differ only in it are one
// version to semver's precedence (and to crates.io), so publishing claims
// them as one: 1.0.0+x after 1.0.0 is a conflict, not a second version.
func recordKey(mv module.Version) string {
	core, _, _ := strings.Cut(mv.Version, "+")
	return mv.Module + "@" + core
}

// isKeyOf reports whether key is the record key of mv: recordKey's, or the
// whole version, as records kept it before build metadata was folded.
func isKeyOf(key string, mv module.Version) bool {
	return key == recordKey(mv) || key == mv.String()
}
