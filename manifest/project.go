package manifest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Require is one direct dependency of a project.
type Require struct {
	// From is the manifest that names it, relative to the project's
	// directory ("moon.mod", "app/moon.mod.json").
	From   string
	Module string
	Dep    Dep
}

// ReadProject reads what a project needs from a registry: path is a
// moon.mod, moon.mod.json or moon.work, or a directory holding one
// (moon.work first, then moon.mod, then moon.mod.json, as moon picks).
// It returns the direct dependencies of the module, or of every member of
// the workspace, sorted by manifest and module. A dependency of one member
// on another is built from the workspace, not fetched: it comes back as a
// path dependency. A missing path or member wraps fs.ErrNotExist.
func ReadProject(path string) ([]Require, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	dir, name := path, ""
	if !fi.IsDir() {
		dir, name = filepath.Dir(path), filepath.Base(path)
	} else if wf, err := os.Stat(filepath.Join(dir, WorkFile)); err == nil && wf.Mode().IsRegular() {
		name = WorkFile
	}
	switch name {
	case "":
		m, file, err := ReadDir(dir)
		if err != nil {
			return nil, err
		}
		return requiresOf(filepath.Base(file), m, nil), nil
	case DSLFile, JSONFile:
		data, err := readBounded(path)
		if err != nil {
			return nil, err
		}
		m, err := Parse(name, data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return requiresOf(name, m, nil), nil
	case WorkFile:
		return readWorkspace(filepath.Join(dir, WorkFile))
	}
	return nil, fmt.Errorf("%s: want a %s, %s or %s, or a directory holding one", path, DSLFile, JSONFile, WorkFile)
}

func readWorkspace(path string) ([]Require, error) {
	data, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	w, err := ParseWork(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	root := filepath.Dir(path)
	type member struct {
		rel  string // the manifest's path relative to root
		mod  Module
		path string
	}
	var members []member
	local := map[string]string{} // module name -> member directory
	for _, dir := range w.MemberDirs(root) {
		m, file, err := ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: member %s: %w", path, dir, err)
		}
		if err != nil {
			return nil, err
		}
		rel, err := filepath.Rel(root, file)
		if err != nil {
			rel = file
		}
		members = append(members, member{rel: filepath.ToSlash(rel), mod: m, path: dir})
		local[m.Name] = dir
	}
	var out []Require
	for _, m := range members {
		out = append(out, requiresOf(m.rel, m.mod, local)...)
	}
	slices.SortFunc(out, func(a, b Require) int {
		return strings.Compare(a.From+"\x00"+a.Module, b.From+"\x00"+b.Module)
	})
	return out, nil
}

// requiresOf lists m's dependencies, sorted; those naming a module of
// local (a workspace member) become path dependencies on it.
func requiresOf(from string, m Module, local map[string]string) []Require {
	out := make([]Require, 0, len(m.Deps))
	for name, d := range m.Deps {
		if dir, ok := local[name]; ok {
			d = Dep{Path: dir}
		}
		out = append(out, Require{From: from, Module: name, Dep: d})
	}
	slices.SortFunc(out, func(a, b Require) int { return strings.Compare(a.Module, b.Module) })
	return out
}
