// Package module is the grammar of the package index: module names,
// versions (semantic versioning 2.0, ordered by precedence), the caret
// requirements moon's resolver reads, the archive paths clients request and
// the SHA-256 checksums index lines carry. It imports nothing of this
// project, so every other package can share its one set of rules.
package module
