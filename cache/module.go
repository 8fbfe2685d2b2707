package cache

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on what a module name or version may look like. They are generous
// next to the real index (longest name: 43 bytes) but small enough that a
// hostile request never builds a path the filesystem would choke on.
const (
	maxModuleLen  = 256
	maxSegmentLen = 128
	maxVersionLen = 128
	maxSegments   = 8
)

// ErrBadName reports a module name, version or archive path that the index
// grammar would never produce.
var ErrBadName = errors.New("invalid module name or version")

// semverPattern is semantic versioning 2.0: the only version form the moon
// client accepts (it fails hard on anything else).
var semverPattern = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)` +
	`(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)

// ownerPattern is what registry user names look like.
var ownerPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

// ModuleVersion names one published archive: module "owner/rest" (rest may
// contain "/") at one semver version.
type ModuleVersion struct {
	Module  string
	Version string
}

func (mv ModuleVersion) String() string { return mv.Module + "@" + mv.Version }

// RelPath is the archive's path below the store root and below the upstream
// download URL: "<owner>/<rest>/<version>.zip". Only valid for a checked
// ModuleVersion.
func (mv ModuleVersion) RelPath() string { return mv.Module + "/" + mv.Version + ".zip" }

// ValidateModule checks a module name against the index grammar: an owner,
// then one or more segments of letters, digits (any script, emoji too), '_',
// '-' and '.', never "." or "..", never empty, no control characters.
func ValidateModule(name string) error {
	if name == "" || len(name) > maxModuleLen || !utf8.ValidString(name) {
		return fmt.Errorf("%w: module %q", ErrBadName, name)
	}
	segs := strings.Split(name, "/")
	if len(segs) < 2 || len(segs) > maxSegments {
		return fmt.Errorf("%w: module %q must be owner/name", ErrBadName, name)
	}
	if !ownerPattern.MatchString(segs[0]) || len(segs[0]) > maxSegmentLen {
		return fmt.Errorf("%w: owner %q in module %q", ErrBadName, segs[0], name)
	}
	for _, s := range segs[1:] {
		if !validSegment(s) {
			return fmt.Errorf("%w: segment %q in module %q", ErrBadName, s, name)
		}
	}
	return nil
}

func validSegment(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > maxSegmentLen || strings.HasPrefix(s, ".") {
		return false
	}
	for _, r := range s {
		switch {
		case r == '_' || r == '-' || r == '.':
		case unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
		case unicode.Is(unicode.So, r): // emoji, e.g. illusory0x0/🐫
		default:
			return false
		}
	}
	return true
}

// ValidateVersion checks that v is a semver 2.0 version of sane length.
func ValidateVersion(v string) error {
	if len(v) > maxVersionLen || !semverPattern.MatchString(v) {
		return fmt.Errorf("%w: version %q", ErrBadName, v)
	}
	return nil
}

// Validate checks both the module name and the version.
func (mv ModuleVersion) Validate() error {
	if err := ValidateModule(mv.Module); err != nil {
		return err
	}
	return ValidateVersion(mv.Version)
}

// ParseArchivePath parses the part of an archive URL after "/user/", in its
// raw (still escaped) form, as clients send it: either one form-urlencoded
// segment "owner%2Frest%2Fversion.zip" or plain slashes
// "owner/rest/version.zip". Both decode to the same ModuleVersion; anything
// the index grammar would not produce is ErrBadName.
func ParseArchivePath(rawPath string) (ModuleVersion, error) {
	if rawPath == "" || len(rawPath) > 3*(maxModuleLen+maxVersionLen+8) {
		return ModuleVersion{}, fmt.Errorf("%w: archive path length %d", ErrBadName, len(rawPath))
	}
	// PathUnescape, not QueryUnescape: a literal '+' in a path stays '+';
	// clients encode '+' as %2B.
	p, err := url.PathUnescape(rawPath)
	if err != nil {
		return ModuleVersion{}, fmt.Errorf("%w: %v", ErrBadName, err)
	}
	if strings.ContainsRune(p, 0) || strings.Contains(p, "\\") {
		return ModuleVersion{}, fmt.Errorf("%w: archive path %q", ErrBadName, p)
	}
	rest, ok := strings.CutSuffix(p, ".zip")
	if !ok {
		return ModuleVersion{}, fmt.Errorf("%w: archive path %q does not end in .zip", ErrBadName, p)
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return ModuleVersion{}, fmt.Errorf("%w: archive path %q has no version", ErrBadName, p)
	}
	mv := ModuleVersion{Module: rest[:i], Version: rest[i+1:]}
	if err := mv.Validate(); err != nil {
		return ModuleVersion{}, err
	}
	return mv, nil
}

// CompareVersions orders two valid semver versions by semver precedence
// (-1, 0, +1). Build metadata does not affect precedence; versions that differ
// only in it are ordered by their text, so sorting is deterministic.
func CompareVersions(a, b string) int {
	ac, abuild, _ := strings.Cut(a, "+")
	bc, bbuild, _ := strings.Cut(b, "+")
	acore, apre, _ := strings.Cut(ac, "-")
	bcore, bpre, _ := strings.Cut(bc, "-")
	as, bs := strings.Split(acore, "."), strings.Split(bcore, ".")
	for i := 0; i < 3 && i < len(as) && i < len(bs); i++ {
		if c := compareNumeric(as[i], bs[i]); c != 0 {
			return c
		}
	}
	switch {
	case apre == "" && bpre != "":
		return 1
	case apre != "" && bpre == "":
		return -1
	}
	if c := comparePrerelease(apre, bpre); c != 0 {
		return c
	}
	return strings.Compare(abuild, bbuild)
}

// compareNumeric compares digit strings without leading zeros (guaranteed
// by the grammar) of any length.
func compareNumeric(a, b string) int {
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

func comparePrerelease(a, b string) int {
	if a == b {
		return 0
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
	switch {
	case len(as) < len(bs):
		return -1
	case len(as) > len(bs):
		return 1
	}
	return 0
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}
