package module

import (
	"fmt"
	"strings"
)

// Requirement is a dependency's version requirement, read the way the moon
// client reads it: with Rust semver rules, where a bare "1.2.3" means
// "^1.2.3". Moon's resolver only supports caret requirements (and "*"), so
// only those are accepted.
type Requirement struct {
	any                 bool   // "*" or "": every release version
	major, minor, patch string // digit strings; only the first parts are set
	parts               int    // how many of major, minor, patch were written
	pre                 string // prerelease, only with all three parts
}

// ParseRequirement reads a requirement as moon.mod.json and index lines
// write it ("0.4.6", "^1.2", "*").
func ParseRequirement(s string) (Requirement, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "*" {
		return Requirement{any: true}, nil
	}
	s = strings.TrimSpace(strings.TrimPrefix(s, "^"))
	if s == "" || strings.ContainsAny(s, "<>=~*, ") {
		return Requirement{}, fmt.Errorf("unsupported version requirement %q (moon supports only caret requirements)", s)
	}
	core, _, _ := strings.Cut(s, "+")
	core, pre, hasPre := strings.Cut(core, "-")
	f := strings.Split(core, ".")
	if len(f) > 3 || (hasPre && len(f) != 3) {
		return Requirement{}, fmt.Errorf("invalid version requirement %q", s)
	}
	r := Requirement{parts: len(f), pre: pre}
	for i, p := range f {
		if !isDigits(p) {
			return Requirement{}, fmt.Errorf("invalid version requirement %q", s)
		}
		p = strings.TrimLeft(p, "0")
		if p == "" {
			p = "0"
		}
		switch i {
		case 0:
			r.major = p
		case 1:
			r.minor = p
		case 2:
			r.patch = p
		}
	}
	return r, nil
}

// Matches reports whether version v satisfies the requirement, with Cargo's
// caret rules: ^1.2.3 is >=1.2.3,<2.0.0; ^0.2.3 is >=0.2.3,<0.3.0; ^0.0.3 is
// =0.0.3; a prerelease version only matches a requirement that names a
// prerelease of the same major.minor.patch.
func (r Requirement) Matches(v string) bool {
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
	if r.major == "0" && p.minor != r.minor {
		return false
	}
	if c := compareNumeric(p.minor, r.minor); c != 0 {
		return c > 0
	}
	if r.parts == 2 {
		return true
	}
	if r.major == "0" && r.minor == "0" && p.patch != r.patch {
		return false
	}
	if c := compareNumeric(p.patch, r.patch); c != 0 {
		return c > 0
	}
	// Same major.minor.patch: a release satisfies any prerelease requirement
	// of it; prereleases compare by semver precedence.
	if r.pre == "" || p.pre == "" {
		return p.pre == ""
	}
	return comparePrerelease(p.pre, r.pre) >= 0
}
