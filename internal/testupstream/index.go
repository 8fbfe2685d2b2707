package testupstream

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// Index is the package index the upstream serves at /git/index: a bare git
// repository whose branch main holds the .index files, committed
// deterministically and served read-only by git http-backend, and the
// module table read from those files, which the API answers from. Tests
// publish into it while it runs (AddVersion, AddVersionRaw) and rewrite its
// history. Its methods are safe for concurrent use.
type Index struct {
	downloads *Downloads // where a published version's zip goes
	repo      *gitRepo
	git       http.Handler // git http-backend over the repository

	gitMu sync.Mutex // serializes changes to the repository

	mu      sync.RWMutex
	files   map[string][]byte // the served index tree, by slash path
	modules map[string]*moduleInfo
}

// newIndex copies the index tree of opts.IndexSource, builds the zips
// opts selects into downloads, rewrites their checksums in the copy and
// commits it as the first commit of a new repository under workDir.
// git http-backend's diagnostics go to logw.
func newIndex(ctx context.Context, opts Options, workDir string, downloads *Downloads, logw io.Writer) (*Index, error) {
	files, err := loadIndex(opts.IndexSource)
	if err != nil {
		return nil, err
	}
	modules, err := parseModules(files)
	if err != nil {
		return nil, err
	}
	if len(modules) == 0 {
		return nil, fmt.Errorf("no user/**/*.index files in %s", opts.IndexSource)
	}

	want, err := selectArchives(opts, modules)
	if err != nil {
		return nil, err
	}
	sumsByFile := map[string]map[string]string{}
	for _, mv := range want {
		m := modules[mv.Module]
		a, err := downloads.build(mv.Module, mv.Version, m.info[mv.Version].deps)
		if err != nil {
			return nil, err
		}
		downloads.put(mv.Module, mv.Version, a)
		if sumsByFile[m.file] == nil {
			sumsByFile[m.file] = map[string]string{}
		}
		sumsByFile[m.file][mv.Version] = a.sum
	}
	for file, sums := range sumsByFile {
		b, err := rewriteFile(files[file], sums)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		files[file] = b
	}

	home := filepath.Join(workDir, "home")
	root := filepath.Join(workDir, "repos")
	repoDir := filepath.Join(root, "index")
	for _, d := range []string{home, repoDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("work dir: %w", err)
		}
	}
	repo, err := newGitRepo(ctx, repoDir, home)
	if err != nil {
		return nil, err
	}
	if _, err := repo.commitFiles(ctx, files, "Import mooncakes index snapshot", true); err != nil {
		return nil, err
	}
	return &Index{
		downloads: downloads,
		repo:      repo,
		git:       gitHandler(repo.git, root, repo.env, logw),
		files:     files,
		modules:   modules,
	}, nil
}

// selectArchives expands opts.Archives (and AllArchives) into distinct,
// sorted versions that exist in modules.
func selectArchives(opts Options, modules map[string]*moduleInfo) ([]ModuleVersion, error) {
	seen := map[ModuleVersion]bool{}
	var out []ModuleVersion
	addModule := func(m *moduleInfo, version string) error {
		if version != AllVersions {
			if _, ok := m.info[version]; !ok {
				return fmt.Errorf("archives: %s has no version %q", m.name, version)
			}
			if mv := (ModuleVersion{m.name, version}); !seen[mv] {
				seen[mv] = true
				out = append(out, mv)
			}
			return nil
		}
		for _, v := range m.versions {
			if mv := (ModuleVersion{m.name, v}); !seen[mv] {
				seen[mv] = true
				out = append(out, mv)
			}
		}
		return nil
	}
	if opts.AllArchives {
		for _, m := range modules {
			if err := addModule(m, AllVersions); err != nil {
				return nil, err
			}
		}
	}
	for _, mv := range opts.Archives {
		m, ok := modules[mv.Module]
		if !ok {
			return nil, fmt.Errorf("archives: no module %q in the index", mv.Module)
		}
		v := mv.Version
		if v == "" {
			v = AllVersions
		}
		if err := addModule(m, v); err != nil {
			return nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Module != out[j].Module {
			return out[i].Module < out[j].Module
		}
		return out[i].Version < out[j].Version
	})
	return out, nil
}

// Dir is the served bare git repository (branch main), for assertions
// such as `git -C DIR show main:user/x/y.index`. Do not change it
// directly; use AddVersion and friends.
func (ix *Index) Dir() string { return ix.repo.dir }

// GitEnv is [testsupport.GitEnv] with the index's isolated HOME, for
// running git clients against it in tests.
func (ix *Index) GitEnv() []string { return append([]string(nil), ix.repo.env...) }

// Head returns the commit id main points to.
func (ix *Index) Head(ctx context.Context) (string, error) {
	ix.gitMu.Lock()
	defer ix.gitMu.Unlock()
	return ix.repo.run(ctx, nil, "rev-parse", "--verify", "refs/heads/main")
}

// File returns a copy of module's .index file as main has it now, or nil
// if the module has none.
func (ix *Index) File(module string) []byte {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	b, ok := ix.files[fileForModule(module)]
	if !ok {
		return nil
	}
	return append([]byte(nil), b...)
}

// Versions lists the versions of module in the index, oldest first.
func (ix *Index) Versions(module string) []string {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	m, ok := ix.modules[module]
	if !ok {
		return nil
	}
	return append([]string(nil), m.versions...)
}

// readModules calls fn with the module table, which it must only read and
// not keep.
func (ix *Index) readModules(fn func(modules map[string]*moduleInfo)) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	fn(ix.modules)
}
