package module

import (
	"errors"
	"fmt"
	"net/url"
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

// ErrIndexUnavailable reports that a package index cannot answer yet (a
// mirror before its first sync). Index implementations wrap it; the archive
// pipeline and the server test for it, whichever index they are given.
var ErrIndexUnavailable = errors.New("package index unavailable")

// ErrModuleNotFound reports a module the index does not list. Index
// implementations wrap it; the catalog, resolution and publishing test for it.
var ErrModuleNotFound = errors.New("module not in index")

// Version names one published archive: module "owner/rest" (rest may
// contain "/") at one semver version.
type Version struct {
	Module  string
	Version string
}

func (mv Version) String() string { return mv.Module + "@" + mv.Version }

// ParseVersion is the inverse of String: "<module>@<version>", checked.
// A version has no '@', so the last one separates them.
func ParseVersion(s string) (Version, error) {
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return Version{}, fmt.Errorf("%w: %q is not module@version", ErrBadName, s)
	}
	mv := Version{Module: s[:i], Version: s[i+1:]}
	return mv, mv.Validate()
}

// RelPath is the archive's path below the store root and below the upstream
// download URL: "<owner>/<rest>/<version>.zip". Only valid for a checked
// Version.
func (mv Version) RelPath() string { return mv.Module + "/" + mv.Version + ".zip" }

// ValidateModule checks a module name against the index grammar: an owner,
// then one or more segments of letters, digits (any script, emoji too), '_',
// '-' and '.', never "." or "..", never empty, no control characters.
func ValidateModule(name string) error {
	if name == "" || len(name) > maxModuleLen || !utf8.ValidString(name) {
		return fmt.Errorf("%w: module %q", ErrBadName, name)
	}
	// Segment by segment, without splitting into a slice: this runs on
	// every archive request.
	if n := strings.Count(name, "/") + 1; n < 2 || n > maxSegments {
		return fmt.Errorf("%w: module %q must be owner/name", ErrBadName, name)
	}
	owner, rest, _ := strings.Cut(name, "/")
	if !validOwner(owner) || len(owner) > maxSegmentLen {
		return fmt.Errorf("%w: owner %q in module %q", ErrBadName, owner, name)
	}
	for { // rest holds at least one segment, maybe an empty one
		seg, more, found := strings.Cut(rest, "/")
		if !validSegment(seg) {
			return fmt.Errorf("%w: segment %q in module %q", ErrBadName, seg, name)
		}
		if !found {
			break
		}
		rest = more
	}
	return nil
}

// ValidateOwner checks an owner name (the first segment of a module name),
// as the configuration's owner lists hold them.
func ValidateOwner(owner string) error {
	if !validOwner(owner) || len(owner) > maxSegmentLen {
		return fmt.Errorf("%w: owner %q", ErrBadName, owner)
	}
	return nil
}

// IndexPath is module mod's .index file in the index tree:
// "user/<owner>/<rest>.index".
func IndexPath(mod string) string { return indexRoot + mod + ".index" }

// OwnerIndexDir is the directory of an owner's .index files in the index
// tree: "user/<owner>".
func OwnerIndexDir(owner string) string { return indexRoot + owner }

// indexRoot holds every .index file of the index tree.
const indexRoot = "user/"

// Owner is the owner of module name mod (its first segment).
func Owner(mod string) string {
	owner, _, _ := strings.Cut(mod, "/")
	return owner
}

// validOwner: what registry user names look like, [A-Za-z0-9_][A-Za-z0-9_.-]*.
func validOwner(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
		case (c == '.' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
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
	if len(v) > maxVersionLen || !isSemver(v) {
		return fmt.Errorf("%w: version %q", ErrBadName, v)
	}
	return nil
}

// Validate checks both the module name and the version.
func (mv Version) Validate() error {
	if err := ValidateModule(mv.Module); err != nil {
		return err
	}
	return ValidateVersion(mv.Version)
}

// ParseArchivePath parses the part of an archive URL after "/user/", in its
// raw (still escaped) form, as clients send it: either one form-urlencoded
// segment "owner%2Frest%2Fversion.zip" or plain slashes
// "owner/rest/version.zip". Both decode to the same Version; anything
// the index grammar would not produce is ErrBadName.
func ParseArchivePath(rawPath string) (Version, error) {
	if rawPath == "" || len(rawPath) > 3*(maxModuleLen+maxVersionLen+8) {
		return Version{}, fmt.Errorf("%w: archive path length %d", ErrBadName, len(rawPath))
	}
	// PathUnescape, not QueryUnescape: a literal '+' in a path stays '+';
	// clients encode '+' as %2B.
	p, err := url.PathUnescape(rawPath)
	if err != nil {
		return Version{}, fmt.Errorf("%w: %v", ErrBadName, err)
	}
	if strings.ContainsRune(p, 0) || strings.Contains(p, "\\") {
		return Version{}, fmt.Errorf("%w: archive path %q", ErrBadName, p)
	}
	rest, ok := strings.CutSuffix(p, ".zip")
	if !ok {
		return Version{}, fmt.Errorf("%w: archive path %q does not end in .zip", ErrBadName, p)
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return Version{}, fmt.Errorf("%w: archive path %q has no version", ErrBadName, p)
	}
	mv := Version{Module: rest[:i], Version: rest[i+1:]}
	if err := mv.Validate(); err != nil {
		return Version{}, err
	}
	return mv, nil
}

// ValidChecksum reports whether s is a SHA-256 as index lines and stores
// carry it: 64 lowercase hex digits.
func ValidChecksum(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
