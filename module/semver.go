package module

import (
	"cmp"
	"strings"
)

// semver is a version split into its parts. The numbers stay digit strings,
// so versions of any length compare correctly.
type semver struct {
	major, minor, patch string
	pre, build          string // without their '-' and '+'
}

// parseSemver splits v by the semantic versioning 2.0 grammar, the only
// version form the moon client accepts (it fails hard on anything else):
// three numbers without leading zeros, an optional prerelease of
// dot-separated identifiers (numeric ones without leading zeros), and
// optional build metadata.
func parseSemver(v string) (semver, bool) {
	core, build, hasBuild := strings.Cut(v, "+")
	core, pre, hasPre := strings.Cut(core, "-")
	nums := strings.Split(core, ".")
	if len(nums) != 3 {
		return semver{}, false
	}
	for _, n := range nums {
		if !isNumber(n) {
			return semver{}, false
		}
	}
	if hasPre && !validIdentifiers(pre, true) || hasBuild && !validIdentifiers(build, false) {
		return semver{}, false
	}
	return semver{major: nums[0], minor: nums[1], patch: nums[2], pre: pre, build: build}, true
}

func isSemver(v string) bool {
	_, ok := parseSemver(v)
	return ok
}

// isNumber: digits without a leading zero (but "0" itself).
func isNumber(s string) bool {
	return isDigits(s) && (len(s) == 1 || s[0] != '0')
}

// validIdentifiers checks dot-separated identifiers of [0-9A-Za-z-]; in a
// prerelease, numeric identifiers have no leading zeros.
func validIdentifiers(s string, pre bool) bool {
	for _, id := range strings.Split(s, ".") {
		if id == "" {
			return false
		}
		for i := 0; i < len(id); i++ {
			c := id[i]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
				return false
			}
		}
		if pre && isDigits(id) && !isNumber(id) {
			return false
		}
	}
	return true
}

// Compare orders two valid semver versions by semver precedence (-1, 0,
// +1). Build metadata does not affect precedence; versions that differ only
// in it are ordered by their text, so sorting is deterministic.
func Compare(a, b string) int {
	pa, _ := parseSemver(a)
	pb, _ := parseSemver(b)
	if c := compareCore(pa, pb); c != 0 {
		return c
	}
	if c := comparePrerelease(pa.pre, pb.pre); c != 0 {
		return c
	}
	return strings.Compare(pa.build, pb.build)
}

func compareCore(a, b semver) int {
	if c := compareNumeric(a.major, b.major); c != 0 {
		return c
	}
	if c := compareNumeric(a.minor, b.minor); c != 0 {
		return c
	}
	return compareNumeric(a.patch, b.patch)
}

// compareNumeric compares digit strings without leading zeros of any length.
func compareNumeric(a, b string) int {
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

// comparePrerelease orders prereleases; a release ("") sorts after all of
// them.
func comparePrerelease(a, b string) int {
	switch {
	case a == b:
		return 0
	case a == "":
		return 1
	case b == "":
		return -1
	}
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		an, bn := isDigits(as[i]), isDigits(bs[i])
		var c int
		switch {
		case an && bn:
			c = compareNumeric(strings.TrimLeft(as[i], "0"), strings.TrimLeft(bs[i], "0"))
		case an:
			c = -1 // numeric identifiers sort before alphanumeric ones
		case bn:
			c = 1
		default:
			c = strings.Compare(as[i], bs[i])
		}
		if c != 0 {
			return c
		}
	}
	return cmp.Compare(len(as), len(bs))
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
