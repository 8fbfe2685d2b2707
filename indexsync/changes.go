package indexsync

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"moonbit-registry/gitrepo"
	"moonbit-registry/manifest"
	"moonbit-registry/module"

	"github.com/rs/zerolog"
)

// Changes is what one Sync changed.
type Changes struct {
	// From and To are the commits before and after; From is empty on the
	// first sync, To == From when nothing changed.
	From, To string
	// Initial is set on the first sync; the module and version lists are
	// then empty (everything is new; use Modules to list it).
	Initial bool
	// Rewritten is set when To does not descend from From: upstream
	// rewrote its history and clients holding From must re-clone.
	Rewritten bool
	// Modules lists, sorted, the modules whose .index file changed.
	Modules []string
	// Added are versions that were not in the index before, Changed are
	// versions whose line changed (e.g. yanked, checksum), Removed are
	// versions that disappeared. Each in module order, then index order.
	Added, Changed, Removed []manifest.Entry
}

// Empty reports whether the sync changed nothing.
func (c Changes) Empty() bool { return c.From == c.To && !c.Initial }

// changedFiles lists the paths that differ between two commits of the
// repository at dir.
func changedFiles(ctx context.Context, git *gitrepo.Runner, dir, from, to string) ([]string, error) {
	out, err := git.Run(ctx, dir, nil, "diff", "--name-only", "--no-renames", "-z", from, to, "--")
	if err != nil {
		return nil, err
	}
	names := []string{}
	for _, n := range bytes.Split(out, []byte{0}) {
		if len(n) > 0 {
			names = append(names, string(n))
		}
	}
	return names, nil
}

// moduleFromPath maps "user/<module>.index" to the module name, for paths
// whose name passes the module grammar.
func moduleFromPath(p string) (string, bool) {
	rest, ok := strings.CutPrefix(p, "user/")
	if !ok {
		return "", false
	}
	mod, ok := strings.CutSuffix(rest, ".index")
	if !ok || module.ValidateModule(mod) != nil {
		return "", false
	}
	return mod, true
}

// describe fills c.Modules and the version lists by parsing both sides of
// every changed .index file of the repository at dir, read with one git
// cat-file run; log hears of the new side's malformed lines.
func describe(ctx context.Context, git *gitrepo.Runner, dir string, c *Changes, names []string, log zerolog.Logger) error {
	var mods []string
	var req bytes.Buffer
	for _, n := range names {
		mod, ok := moduleFromPath(n)
		if !ok {
			continue
		}
		mods = append(mods, mod)
		fmt.Fprintf(&req, "%s:%s\n%s:%s\n", c.From, n, c.To, n)
	}
	sort.Strings(mods)
	c.Modules = mods
	if len(mods) == 0 {
		return nil
	}
	out, err := git.Run(ctx, dir, req.Bytes(), "cat-file", "--batch")
	if err != nil {
		return err
	}
	blobs, err := parseBatch(out)
	if err != nil {
		return err
	}
	if len(blobs) != 2*len(mods) {
		return fmt.Errorf("git cat-file returned %d objects for %d requests", len(blobs), 2*len(mods))
	}
	// blobs come in request order, which is the diff's order; sort by
	// module afterwards.
	type pair struct {
		mod      string
		old, new []byte
	}
	var pairs []pair
	i := 0
	for _, n := range names {
		mod, ok := moduleFromPath(n)
		if !ok {
			continue
		}
		pairs = append(pairs, pair{mod, blobs[i], blobs[i+1]})
		i += 2
	}
	sort.Slice(pairs, func(a, b int) bool { return pairs[a].mod < pairs[b].mod })
	for _, p := range pairs {
		// Only the new side's malformed lines are news worth a warning.
		oldV := parseIndex(p.mod, p.old, zerolog.Nop())
		newV := parseIndex(p.mod, p.new, log)
		before := make(map[string]manifest.Entry, len(oldV))
		for _, v := range oldV {
			before[v.Version] = v
		}
		after := make(map[string]bool, len(newV))
		for _, v := range newV {
			after[v.Version] = true
			prev, had := before[v.Version]
			switch {
			case !had:
				c.Added = append(c.Added, v)
			case !bytes.Equal(prev.Raw, v.Raw):
				c.Changed = append(c.Changed, v)
			}
		}
		for _, v := range oldV {
			if !after[v.Version] {
				c.Removed = append(c.Removed, v)
			}
		}
	}
	return nil
}

// parseBatch splits `git cat-file --batch` output into object contents; a
// missing object (file absent on that side) is nil.
func parseBatch(out []byte) ([][]byte, error) {
	r := bufio.NewReader(bytes.NewReader(out))
	var blobs [][]byte
	for {
		hdr, err := r.ReadString('\n')
		if err == io.EOF && hdr == "" {
			return blobs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("git cat-file output: %w", err)
		}
		hdr = strings.TrimSuffix(hdr, "\n")
		if strings.HasSuffix(hdr, " missing") || strings.HasSuffix(hdr, " ambiguous") {
			blobs = append(blobs, nil)
			continue
		}
		f := strings.Fields(hdr)
		if len(f) != 3 {
			return nil, fmt.Errorf("git cat-file output: bad header %q", hdr)
		}
		size, err := strconv.Atoi(f[2])
		if err != nil || size < 0 {
			return nil, fmt.Errorf("git cat-file output: bad size in %q", hdr)
		}
		body := make([]byte, size+1) // content and a trailing newline
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, fmt.Errorf("git cat-file output: %w", err)
		}
		if f[1] != "blob" {
			// A directory or submodule where a file was: no index there.
			blobs = append(blobs, nil)
			continue
		}
		blobs = append(blobs, body[:size])
	}
}
