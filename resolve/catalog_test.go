package resolve

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"moonbit-registry/internal/testsupport"
	"moonbit-registry/manifest"
	"moonbit-registry/module"
)

// lineCatalog is a Catalog over index lines held in memory, read the way
// the git mirror reads its .index files: versions in order of first
// appearance, a later line for a version replacing the earlier one in
// place, and a module it does not hold reported as
// module.ErrModuleNotFound. Tests build it from the index snapshot and
// add lines of their own, with no git and no upstream.
type lineCatalog struct {
	versions map[string][]manifest.Entry
}

// snapshotCatalog is a lineCatalog holding the project's snapshot of the
// real index (testdata/mooncakes-index).
func snapshotCatalog(t testing.TB) *lineCatalog {
	t.Helper()
	c := &lineCatalog{versions: map[string][]manifest.Entry{}}
	// Tests run in the package directory; the snapshot is at the root.
	src := filepath.Join("..", "testdata", "mooncakes-index")
	if err := testsupport.WalkIndex(src, c.add); err != nil {
		t.Fatalf("read index snapshot: %v", err)
	}
	if len(c.versions) == 0 {
		t.Fatalf("read index snapshot: no modules in %s", src)
	}
	return c
}

// add appends one index line of module mod. Unlike the mirror, which
// skips a line it cannot parse, it refuses it: test data must be valid.
func (c *lineCatalog) add(mod string, line []byte) error {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil
	}
	if err := module.ValidateModule(mod); err != nil {
		return fmt.Errorf("index line of %s: %w", mod, err)
	}
	e, err := manifest.ParseLine(mod, line)
	if err != nil {
		return fmt.Errorf("index line of %s: %w", mod, err)
	}
	vs := c.versions[mod]
	if i := slices.IndexFunc(vs, func(v manifest.Entry) bool { return v.Version == e.Version }); i >= 0 {
		vs[i] = e
		return nil
	}
	c.versions[mod] = append(vs, e)
	return nil
}

// addLine is add for a test's own lines.
func (c *lineCatalog) addLine(t testing.TB, mod, line string) {
	t.Helper()
	if err := c.add(mod, []byte(line)); err != nil {
		t.Fatal(err)
	}
}

// Modules lists the modules held, sorted, as the mirror does.
func (c *lineCatalog) Modules(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	mods := make([]string, 0, len(c.versions))
	for m := range c.versions {
		mods = append(mods, m)
	}
	slices.Sort(mods)
	return mods, nil
}

// Versions returns a copy of a module's versions, so a caller cannot
// change what later calls see.
func (c *lineCatalog) Versions(ctx context.Context, mod string) ([]manifest.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	vs, ok := c.versions[mod]
	if !ok {
		return nil, fmt.Errorf("%w: %s", module.ErrModuleNotFound, mod)
	}
	return slices.Clone(vs), nil
}
