package testupstream

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// SubsetIndex writes to dst (which must not exist yet) the .index files of
// src that belong to owners, and those of every module their versions
// depend on (deps and bin-deps), directly or not: an index in which every dependency a test
// can reach resolves, at a fraction of the snapshot's size (cloning,
// packing and checking it out cost in proportion). It returns how many
// modules it wrote.
func SubsetIndex(src, dst string, owners []string) (int, error) {
	files, err := loadIndex(src)
	if err != nil {
		return 0, err
	}
	mods, err := parseModules(files)
	if err != nil {
		return 0, err
	}
	keep := map[string]bool{}
	var todo []string
	for name := range mods {
		if slices.Contains(owners, ownerOf(name)) {
			keep[name] = true
			todo = append(todo, name)
		}
	}
	for len(todo) > 0 {
		m := mods[todo[len(todo)-1]]
		todo = todo[:len(todo)-1]
		for _, vi := range m.info {
			for _, raw := range []json.RawMessage{vi.deps, vi.binDeps} {
				var deps map[string]json.RawMessage
				if len(raw) > 0 && json.Unmarshal(raw, &deps) != nil {
					continue // not a map of dependencies: nothing to follow
				}
				for dep := range deps {
					if _, ok := mods[dep]; ok && !keep[dep] {
						keep[dep] = true
						todo = append(todo, dep)
					}
				}
			}
		}
	}
	if len(keep) == 0 {
		return 0, fmt.Errorf("subset of %s: no module of %v", src, owners)
	}
	if _, err := os.Stat(dst); err == nil {
		return 0, fmt.Errorf("subset of %s: %s exists", src, dst)
	}
	names := make([]string, 0, len(keep))
	for name := range keep {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := filepath.Join(dst, filepath.FromSlash(mods[name].file))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return 0, err
		}
		if err := os.WriteFile(p, files[mods[name].file], 0o644); err != nil {
			return 0, err
		}
	}
	return len(names), nil
}

// ownerOf is the owner part of a module name ("owner/rest").
func ownerOf(module string) string {
	owner, _, _ := strings.Cut(module, "/")
	return owner
}
