package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"moonbit-registry/internal/testsupport"
	"moonbit-registry/internal/testupstream"
)

// templateMoonMod is the moon.mod `moon new` writes (moon's
// crates/moonbuild/template/moon_new_template.toml at baa7814), for module
// name, with the import the template's comment suggests filled in.
func templateMoonMod(name, imports string) string {
	return `// Learn more about moon.mod configuration:
// https://docs.moonbitlang.com/en/latest/toolchain/moon/module.html
//
// To add a dependency, run this command in your terminal:
//   moon add moonbitlang/x

name = "` + name + `"

version = "0.1.0"

import {
` + imports + `}

readme = "README.mbt.md"

repository = ""

license = "Apache-2.0"

keywords = []

preferred_target = "wasm"

description = ""
`
}

// TestModuleFromTodaysTemplate: a module created by today's `moon new`
// (moon.mod only, with an import) publishes, is served with the index
// line mooncakes writes, resolves and downloads through the registry; and
// mirror --from its moon.mod, or a moon.work over it and another project,
// pre-warms what a client fetches.
func TestModuleFromTodaysTemplate(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// A small index: one older release the build lists must pass over.
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "user", "pubowner"), 0o755); err != nil {
		t.Fatal(err)
	}
	old := `{"name": "pubowner/util", "version": "0.9.0", "checksum": "` + strings.Repeat("0", 64) + `"}` + "\n"
	if err := os.WriteFile(filepath.Join(src, "user", "pubowner", "util.index"), []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	up := startUpstream(t, testupstream.Options{IndexSource: src})
	for _, v := range []string{"1.0.0", "1.2.0"} {
		if err := up.Index.AddVersion(ctx, "pubowner/util", v, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := up.Index.AddVersion(ctx, "pubowner/other", "0.3.0", nil); err != nil {
		t.Fatal(err)
	}
	root, token := privateRoot(t)
	reg := startRegistry(t, registryOptions{Root: root, UpstreamURL: up.URL()})

	mod := templateMoonMod("acme/tools", "  \"pubowner/util@1.0.0\",\n")
	data, err := testsupport.Zip(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		testsupport.ZipFile{Name: "moon.mod", Data: []byte(mod)},
		testsupport.ZipFile{Name: "README.mbt.md", Data: []byte("# tools\n")},
		testsupport.ZipFile{Name: "moon.pkg", Data: nil},
		testsupport.ZipFile{Name: "tools.mbt", Data: []byte("pub fn hello() -> String { \"hello\" }\n")})
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "acme-tools-0.1.0.zip")
	if err := os.WriteFile(archive, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := runWithToken(t, root, token, "publish", "--server", reg.URL, archive); code != 0 || !strings.Contains(out, "published acme/tools@0.1.0") {
		t.Fatalf("publish: exit %d\n%s%s", code, out, errOut)
	}

	client := newMoonClient(t, reg.URL)
	if err := client.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(client.indexDir, "user", "acme", "tools.index"))
	if err != nil {
		t.Fatal(err)
	}
	var line map[string]any
	if err := json.Unmarshal(raw, &line); err != nil {
		t.Fatalf("index line %s: %v", raw, err)
	}
	want := map[string]any{
		"name": "acme/tools", "version": "0.1.0", "deps": map[string]any{"pubowner/util": "1.0.0"},
		"readme": "README.mbt.md", "repository": "", "license": "Apache-2.0", "keywords": []any{},
		"description": "", "preferred-target": "wasm",
	}
	for k, v := range want {
		if got, _ := json.Marshal(line[k]); string(got) != mustJSON(t, v) {
			t.Errorf("index line %q = %s, want %s", k, got, mustJSON(t, v))
		}
	}
	if line["checksum"] == nil || line["created_at"] == nil {
		t.Errorf("index line lacks checksum or created_at: %s", raw)
	}

	build := mirResolve(t, client, map[string]string{"acme/tools": "0.1.0"})
	if !slices.Equal(build, []string{"acme/tools@0.1.0", "pubowner/util@1.0.0"}) {
		t.Fatalf("build list = %v", build)
	}
	for _, s := range build {
		mod, v, _ := strings.Cut(s, "@")
		if _, err := client.Download(ctx, mod, v); err != nil {
			t.Fatalf("download %s: %v", s, err)
		}
	}

	// A project made by the template that imports acme/tools, and a
	// workspace over it and a second member in the older JSON form; the
	// second member imports the first, which is built locally.
	ws := t.TempDir()
	write := func(rel, text string) {
		t.Helper()
		p := filepath.Join(ws, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("app/moon.mod", templateMoonMod("me/app", "  \"acme/tools@0.1.0\",\n"))
	write("cli/moon.mod.json", `{"name": "me/cli", "deps": {"me/app": "0.1.0", "pubowner/other": "0.3.0"}}`)
	write("moon.work", "members = [\n  \"./app\",\n  \"./cli\",\n]\n")
	for _, tc := range []struct {
		name, from string
		want       []string
	}{
		{"moon.mod", filepath.Join(ws, "app", "moon.mod"), []string{"acme/tools@0.1.0", "pubowner/util@1.0.0"}},
		{"module directory", filepath.Join(ws, "app"), []string{"acme/tools@0.1.0", "pubowner/util@1.0.0"}},
		{"moon.work", filepath.Join(ws, "moon.work"), []string{"acme/tools@0.1.0", "pubowner/other@0.3.0", "pubowner/util@1.0.0"}},
		{"workspace directory", ws, []string{"acme/tools@0.1.0", "pubowner/other@0.3.0", "pubowner/util@1.0.0"}},
	} {
		t.Run("mirror --from "+tc.name, func(t *testing.T) {
			out, errOut, code := runRegistry(t, root, up.URL(), "mirror", "--dry-run", "--no-symbols", "--from", tc.from)
			if code != 0 {
				t.Fatalf("exit %d\n%s%s", code, out, errOut)
			}
			for _, s := range tc.want {
				if !strings.Contains(out, s) {
					t.Errorf("%s is not selected:\n%s", s, out)
				}
			}
			for _, s := range []string{"pubowner/util@1.2.0", "pubowner/other@0.3.0"} {
				if !slices.Contains(tc.want, s) && strings.Contains(out, s) {
					t.Errorf("%s is selected:\n%s", s, out)
				}
			}
			if strings.Contains(tc.name, "work") && !strings.Contains(out, "me/app (required by cli/moon.mod.json)") {
				t.Errorf("the member imported by another is not reported as local:\n%s", out)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
