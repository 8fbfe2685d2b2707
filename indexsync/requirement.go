package indexsync

import (
	"fmt"
	"strconv"
	"strings"

	"moonbit-registry/cache"
)

// A requirement is a dependency's version requirement, read the way the moon
// client reads it: with Rust semver rules, where a bare "1.2.3" means
// "^1.2.3". Moon's resolver only supports caret requirements (and "*"), so
// only those are accepted here.
type requirement struct {
	any                 bool // "*" or "": every release version
	major, minor, patch uint64
	parts               int    // how many of major, minor, patch were written
	pre                 string // prerelease, only with all three parts
}

// semverParts is a parsed version: numbers plus prerelease.
type semverParts struct {
	major, minor, patch uint64
	pre                 string
}

func parseSemver(v string) (semverParts, bool) {
	core, _, _ := strings.Cut(v, "+")
	core, pre, _ := strings.Cut(core, "-")
	f := strings.Split(core, ".")
	if len(f) != 3 {
		return semverParts{}, false
	}
	var n [3]uint64
	for i, s := range f {
		x, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return semverParts{}, false
		}
		n[i] = x
	}
	return semverParts{n[0], n[1], n[2], pre}, true
}

func parseRequirement(s string) (requirement, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "*" {
		return requirement{any: true}, nil
	}
	s = strings.TrimSpace(strings.TrimPrefix(s, "^"))
	if s == "" || strings.ContainsAny(s, "<>=~*, ") {
		return requirement{}, fmt.Errorf("unsupported version requirement %q (moon supports only caret requirements)", s)
	}
	core, _, _ := strings.Cut(s, "+")
	core, pre, hasPre := strings.Cut(core, "-")
	f := strings.Split(core, ".")
	if len(f) > 3 || (hasPre && len(f) != 3) {
		return requirement{}, fmt.Errorf("invalid version requirement %q", s)
	}
	r := requirement{parts: len(f), pre: pre}
	for i, p := range f {
		x, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return requirement{}, fmt.Errorf("invalid version requirement %q", s)
		}
		switch i {
		case 0:
			r.major = x
		case 1:
			r.minor = x
		case 2:
			r.patch = x
		}
	}
	return r, nil
}

// matches reports whether version v satisfies the requirement, with Cargo's
// caret rules: ^1.2.3 is >=1.2.3,<2.0.0; ^0.2.3 is >=0.2.3,<0.3.0; ^0.0.3 is
// =0.0.3; a prerelease version only matches a requirement that names a
// prerelease of the same major.minor.patch.
func (r requirement) matches(v string) bool {
	p, ok := parseSemver(v)
	if !ok {
		return false
	}
	if r.any {
		return p.pre == ""
	}
	if p.pre != "" && (r.pre == "" || p.major != r.major || p.minor != r.minor || p.patch != r.patch) {
		return false
	}
	if p.major != r.major {
		return false
	}
	if r.parts == 1 {
		return true
	}
	if r.major == 0 && p.minor != r.minor {
		return false
	}
	if p.minor != r.minor {
		return p.minor > r.minor
	}
	if r.parts == 2 {
		return true
	}
	if r.major == 0 && r.minor == 0 && p.patch != r.patch {
		return false
	}
	if p.patch != r.patch {
		return p.patch > r.patch
	}
	// Same major.minor.patch: a release satisfies any prerelease requirement
	// of it; prereleases compare by semver precedence.
	if r.pre == "" || p.pre == "" {
		return p.pre == ""
	}
	return comparePre(p.pre, r.pre) >= 0
}

// comparePre orders two prerelease strings by semver precedence.
func comparePre(a, b string) int {
	const v = "0.0.0-"
	return cache.CompareVersions(v+a, v+b)
}
