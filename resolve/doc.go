// Package resolve decides which module versions a mirror or verify run
// covers, reading the index through a Catalog (in the registry, the git
// mirror of package indexsync).
//
// Select expands patterns ("owner/name", "owner/name@version", "owner/*",
// "*") into versions and, unless told to be strict, adds what they depend
// on; SelectDeps does the same from a project's direct dependencies.
// Dependencies (deps and bin-deps) are followed the way moon's minimal
// version selection resolves them: for each requirement the lowest
// published version that satisfies it, yanked and deprecated ones
// included, recursively. What cannot be followed (path and git
// dependencies without a version, modules the index lacks, requirements
// nothing satisfies) is reported in Selection.Skipped rather than failing
// the run.
package resolve
