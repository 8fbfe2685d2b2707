package private_test

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"maps"
	"strings"
	"testing"
	"time"

	"moonbit-registry/internal/testsupport"
	"moonbit-registry/manifest"
	"moonbit-registry/private"
)

// zipTime dates every entry, so one list of files always gives one zip.
var zipTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// goodManifest is a moon.mod.json that passes.
const goodManifest = `{"name": "acme/lib", "version": "1.2.3"}`

// zipOf builds a zip of files in order (stored, so their bytes appear
// as they are in the zip).
func zipOf(t *testing.T, files ...testsupport.ZipFile) []byte {
	t.Helper()
	b, err := testsupport.Zip(zipTime, files...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func file(name, data string) testsupport.ZipFile {
	return testsupport.ZipFile{Name: name, Data: []byte(data)}
}

func dir(name string) testsupport.ZipFile {
	return testsupport.ZipFile{Name: name, Mode: fs.ModeDir | 0o755}
}

// rawEntry is an entry written as is with the sizes and CRC its header
// claims, which need not be the truth.
type rawEntry struct {
	name             string
	method           uint16
	raw              []byte // the entry's bytes in the zip (compressed if method says so)
	crc              uint32
	compressed, size uint64
}

// rawZip builds a zip of a manifest and then entries written raw.
func rawZip(t *testing.T, manifest string, entries ...rawEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: "moon.mod.json", Method: zip.Store, Modified: zipTime})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(manifest)); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.compressed == 0 {
			e.compressed = uint64(len(e.raw))
		}
		fh := &zip.FileHeader{
			Name: e.name, Method: e.method, Modified: zipTime, CRC32: e.crc,
			CompressedSize64: e.compressed, UncompressedSize64: e.size,
		}
		fh.SetMode(0o644)
		w, err := zw.CreateRaw(fh)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(e.raw); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func deflate(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	fw, err := flate.NewWriter(&buf, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func inspect(b []byte) (manifest.Module, map[string]string, error) {
	return private.InspectArchive(bytes.NewReader(b), int64(len(b)))
}

func TestInspectArchiveAcceptsAMoonPackage(t *testing.T) {
	manifest := `{
		"name": "acme/lib",
		"version": "1.2.3-rc.1+build.7",
		"deps": {
			"moonbitlang/x": "0.4.6",
			"acme/caret": "^1.2",
			"acme/any": "*",
			"acme/obj": {"version": "0.2.0"},
			"acme/local": {"path": "../local", "version": "^0.3.1"}
		},
		"readme": "README.md",
		"repository": "https://example.com/acme/lib",
		"license": "Apache-2.0",
		"keywords": ["parsing", "lexing"],
		"description": "A library",
		"source": "src",
		"preferred-target": "wasm-gc"
	}`
	b := zipOf(t,
		file("moon.mod.json", manifest),
		dir("src/"),
		file("src/lib/lib.mbt", "pub fn f() -> Int { 1 }\n"),
		file("src/lib/moon.pkg.json", "{}"),
		file("README.md", "# lib\n"),
	)
	m, deps, err := inspect(b)
	if err != nil {
		t.Fatalf("InspectArchive: %v", err)
	}
	if m.Name != "acme/lib" || m.Version != "1.2.3-rc.1+build.7" {
		t.Errorf("name, version = %q, %q", m.Name, m.Version)
	}
	if mv := m.Archive(); mv.Module != "acme/lib" || mv.Version != "1.2.3-rc.1+build.7" {
		t.Errorf("Archive() = %v", mv)
	}
	want := map[string]string{
		"moonbitlang/x": "0.4.6",
		"acme/caret":    "^1.2",
		"acme/any":      "*",
		"acme/obj":      "0.2.0",
		"acme/local":    "^0.3.1",
	}
	if !maps.Equal(deps, want) {
		t.Errorf("deps = %v, want %v", deps, want)
	}
	if m.Readme != "README.md" || m.Repository != "https://example.com/acme/lib" || m.License != "Apache-2.0" ||
		m.Description != "A library" || m.Source != "src" || m.PreferredTarget != "wasm-gc" ||
		strings.Join(m.Keywords, ",") != "parsing,lexing" {
		t.Errorf("manifest fields = %+v", m)
	}
}

func TestInspectArchiveWithoutDeps(t *testing.T) {
	m, deps, err := inspect(zipOf(t, file("moon.mod.json", goodManifest)))
	if err != nil {
		t.Fatalf("InspectArchive: %v", err)
	}
	if m.Name != "acme/lib" || m.Version != "1.2.3" || len(deps) != 0 {
		t.Errorf("got %q %q %v", m.Name, m.Version, deps)
	}
}

func TestInspectArchiveRefuses(t *testing.T) {
	manifest := file("moon.mod.json", goodManifest)
	lie := bytes.Repeat([]byte("all work and no play "), 50<<10) // about 1 MiB, deflates to little
	small := []byte("hello, world\n")
	tests := []struct {
		name  string
		build func(t *testing.T) []byte
		want  []string // substrings of the error
	}{
		{"not a zip", func(t *testing.T) []byte {
			return []byte("this is not a zip archive, only some text long enough to look at")
		}, []string{"not a zip"}},
		{"truncated zip", func(t *testing.T) []byte {
			b := zipOf(t, manifest, file("a.txt", "a"))
			return b[:len(b)-10]
		}, []string{"not a zip"}},
		{"no manifest", func(t *testing.T) []byte {
			return zipOf(t, file("README.md", "x"), file("src/lib.mbt", "x"))
		}, []string{"no moon.mod or moon.mod.json"}},
		{"manifest only in a subdirectory", func(t *testing.T) []byte {
			return zipOf(t, dir("lib/"), file("lib/moon.mod.json", goodManifest))
		}, []string{"no moon.mod or moon.mod.json", "root"}},
		{"manifest is a directory", func(t *testing.T) []byte {
			return zipOf(t, dir("moon.mod.json/"), file("moon.mod.json/x", goodManifest))
		}, []string{"no moon.mod or moon.mod.json"}},
		{"parent segment", func(t *testing.T) []byte {
			return zipOf(t, manifest, file("../x", "x"))
		}, []string{`"../x"`, "'..'"}},
		{"parent segment inside", func(t *testing.T) []byte {
			return zipOf(t, manifest, file("src/../../x", "x"))
		}, []string{`"src/../../x"`, "'..'"}},
		{"dot segment", func(t *testing.T) []byte {
			return zipOf(t, manifest, file("./src/x", "x"))
		}, []string{`"./src/x"`, "'.'"}},
		{"empty segment", func(t *testing.T) []byte {
			return zipOf(t, manifest, file("src//x", "x"))
		}, []string{`"src//x"`, "empty"}},
		{"absolute path", func(t *testing.T) []byte {
			return zipOf(t, manifest, file("/abs", "x"))
		}, []string{`"/abs"`, "absolute"}},
		{"drive letter", func(t *testing.T) []byte {
			return zipOf(t, manifest, file("C:/x", "x"))
		}, []string{`"C:/x"`, "absolute"}},
		{"backslash", func(t *testing.T) []byte {
			return zipOf(t, manifest, file(`a\b`, "x"))
		}, []string{`a\\b`, "backslash"}},
		{"duplicate file", func(t *testing.T) []byte {
			return zipOf(t, manifest, file("src/a.mbt", "one"), file("src/a.mbt", "two"))
		}, []string{`"src/a.mbt"`, "twice"}},
		{"duplicate manifest", func(t *testing.T) []byte {
			return zipOf(t, manifest, file("moon.mod.json", `{"name": "acme/other", "version": "9.9.9"}`))
		}, []string{`"moon.mod.json"`, "twice"}},
		{"file and directory of one name", func(t *testing.T) []byte {
			return zipOf(t, manifest, file("src", "x"), dir("src/"))
		}, []string{`"src/"`, "twice"}},
		{"names that differ only in case", func(t *testing.T) []byte {
			return zipOf(t, manifest, file("src/A.mbt", "one"), file("src/a.mbt", "two"))
		}, []string{`"src/A.mbt"`, `"src/a.mbt"`, "only in case"}},
		{"directories that differ only in case", func(t *testing.T) []byte {
			return zipOf(t, manifest, file("Src/a.mbt", "one"), file("src/b.mbt", "two"))
		}, []string{`"Src"`, `"src"`, "only in case"}},
		{"a directory entry and a path that differ only in case", func(t *testing.T) []byte {
			return zipOf(t, manifest, dir("Src/"), file("src/b.mbt", "two"))
		}, []string{`"Src"`, `"src"`, "only in case"}},
		{"a file used as a directory", func(t *testing.T) []byte {
			return zipOf(t, manifest, file("moon.mod.json/x", goodManifest))
		}, []string{`"moon.mod.json/x"`, `inside "moon.mod.json"`}},
		{"name flagged UTF-8 that is not (overlong dot)", func(t *testing.T) []byte {
			return zipOf(t, manifest, file("src/\xc0\xae\xc0\xae/evil.sh", "x"))
		}, []string{"not valid UTF-8"}},
		{"data in front of the zip", func(t *testing.T) []byte {
			return append([]byte("#!/bin/sh\necho hello\n"), zipOf(t, manifest)...)
		}, []string{"data in front"}},
		{"two zips glued together", func(t *testing.T) []byte {
			first := zipOf(t, file("../../evil.sh", "rm -rf ~"))
			return append(first, zipOf(t, manifest, file("src/a.mbt", "x"))...)
		}, []string{`local header names "../../evil.sh"`}},
		{"a second end record after the first", func(t *testing.T) []byte {
			b := zipOf(t, manifest)
			return append(b, b[len(b)-22:]...)
		}, []string{"directory does not end where its end record starts"}},
		{"a second name in a Unicode Path extra field", func(t *testing.T) []byte {
			var buf bytes.Buffer
			w := zip.NewWriter(&buf)
			for _, h := range []*zip.FileHeader{
				{Name: "moon.mod.json", Method: zip.Store},
				{Name: "src/a.mbt", Method: zip.Store, Extra: []byte{0x75, 0x70, 9, 0, 1, 0, 0, 0, 0, '.', '.', '/', 'x'}},
			} {
				fw, err := w.CreateHeader(h)
				if err != nil {
					t.Fatal(err)
				}
				fw.Write([]byte(goodManifest))
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			return buf.Bytes()
		}, []string{`"src/a.mbt"`, "second name"}},
		{"a name too deep", func(t *testing.T) []byte {
			return zipOf(t, manifest, file(strings.Repeat("a/", 40)+"x.mbt", "x"))
		}, []string{"deeper than 32"}},
		{"a name too long", func(t *testing.T) []byte {
			return zipOf(t, manifest, file("src/"+strings.Repeat("x", 600)+".mbt", "x"))
		}, []string{"at most 512"}},
		{"data after the zip", func(t *testing.T) []byte {
			return append(zipOf(t, manifest), "trailing bytes"...)
		}, []string{"does not end the file"}},
		{"symbolic link", func(t *testing.T) []byte {
			return zipOf(t, manifest, testsupport.ZipFile{Name: "src/link", Data: []byte("../../../etc/passwd"), Mode: fs.ModeSymlink | 0o777})
		}, []string{`"src/link"`, "symbolic link"}},
		{"named pipe", func(t *testing.T) []byte {
			return zipOf(t, manifest, testsupport.ZipFile{Name: "fifo", Mode: fs.ModeNamedPipe | 0o644})
		}, []string{`"fifo"`, "not a plain file or directory"}},
		{"header understates the size", func(t *testing.T) []byte {
			return rawZip(t, goodManifest, rawEntry{
				name: "bomb.txt", method: zip.Deflate, raw: deflate(t, lie), crc: crc32.ChecksumIEEE(lie),
				size: 100,
			})
		}, []string{`"bomb.txt"`, "damaged"}},
		{"header overstates the size", func(t *testing.T) []byte {
			return rawZip(t, goodManifest, rawEntry{
				name: "short.txt", method: zip.Store, raw: small, crc: crc32.ChecksumIEEE(small),
				compressed: uint64(len(small)), size: uint64(len(small)) + 100,
			})
		}, []string{`"short.txt"`, "damaged"}},
		{"stored size understated", func(t *testing.T) []byte {
			return rawZip(t, goodManifest, rawEntry{
				name: "short.txt", method: zip.Store, raw: small, crc: crc32.ChecksumIEEE(small),
				compressed: uint64(len(small)), size: 3,
			})
		}, []string{`"short.txt"`, "damaged"}},
		{"declared sizes over the unpack limit", func(t *testing.T) []byte {
			// Two entries that each claim 200 MiB: refused on their
			// headers, before anything is unpacked.
			var ents []rawEntry
			for i := range 2 {
				ents = append(ents, rawEntry{
					name: fmt.Sprintf("big%d.bin", i), method: zip.Deflate, raw: deflate(t, nil),
					crc: 0, size: 200 << 20,
				})
			}
			return rawZip(t, goodManifest, ents...)
		}, []string{"unpacks to more than 256 MiB"}},
		{"damaged entry", func(t *testing.T) []byte {
			b := zipOf(t, manifest, file("src/a.mbt", "0123456789abcdef-THE-CONTENT"))
			i := bytes.Index(b, []byte("THE-CONTENT"))
			if i < 0 {
				t.Fatal("content not found in the zip")
			}
			b[i] ^= 0x20
			return b
		}, []string{`"src/a.mbt"`, "damaged", "checksum"}},
		{"damaged manifest", func(t *testing.T) []byte {
			b := zipOf(t, manifest)
			i := bytes.Index(b, []byte(`"acme/lib"`))
			if i < 0 {
				t.Fatal("manifest not found in the zip")
			}
			b[i+1] = 'A'
			return b
		}, []string{`"moon.mod.json"`, "damaged"}},
		{"manifest too large", func(t *testing.T) []byte {
			big := `{"name": "acme/lib", "version": "1.2.3", "description": "` + strings.Repeat("x", 1<<20) + `"}`
			return zipOf(t, file("moon.mod.json", big))
		}, []string{"moon.mod.json", "larger than 1024 KiB"}},
		{"too many entries", func(t *testing.T) []byte {
			files := []testsupport.ZipFile{manifest}
			for i := range 50_000 {
				files = append(files, testsupport.ZipFile{Name: fmt.Sprintf("f/%d", i)})
			}
			return zipOf(t, files...)
		}, []string{"50001 entries", "at most 50000"}},
		{"bad module name", func(t *testing.T) []byte {
			return zipOf(t, file("moon.mod.json", `{"name": "noslash", "version": "1.0.0"}`))
		}, []string{"moon.mod.json", `"noslash"`}},
		{"missing version", func(t *testing.T) []byte {
			return zipOf(t, file("moon.mod.json", `{"name": "acme/lib"}`))
		}, []string{`no "version"`}},
		{"path dependency", func(t *testing.T) []byte {
			return zipOf(t, file("moon.mod.json", `{"name": "acme/lib", "version": "1.0.0", "deps": {"acme/x": {"path": "../x"}}}`))
		}, []string{`"acme/x"`, "path or git dependency"}},
		{"unsupported requirement", func(t *testing.T) []byte {
			return zipOf(t, file("moon.mod.json", `{"name": "acme/lib", "version": "1.0.0", "deps": {"acme/x": ">=1.0"}}`))
		}, []string{`"acme/x"`, "unsupported version requirement"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, deps, err := inspect(tt.build(t))
			if err == nil {
				t.Fatalf("InspectArchive accepted it: %+v, deps %v", m, deps)
			}
			t.Log(err)
			if !errors.Is(err, private.ErrInvalid) {
				t.Errorf("error %q does not wrap ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestParseManifest(t *testing.T) {
	tests := []struct {
		name     string
		manifest string
		want     []string // substrings of the error; nil: accepted
		deps     map[string]string
	}{
		{"minimal", `{"name": "acme/lib", "version": "0.1.0"}`, nil, map[string]string{}},
		{"nested name and unknown fields", `{"name": "acme/lib/sub", "version": "0.1.0", "warn-list": "-1", "deps": {}}`, nil, map[string]string{}},
		{"dependency forms", `{"name": "acme/lib", "version": "0.1.0", "deps": {
			"a/s": "1.0.0", "a/o": {"version": "^2.1"}, "a/p": {"path": "../p", "version": "0.3.0"}}}`,
			nil, map[string]string{"a/s": "1.0.0", "a/o": "^2.1", "a/p": "0.3.0"}},
		{"not JSON", `{"name": `, []string{"not valid JSON"}, nil},
		{"not an object", `["acme/lib"]`, []string{"not valid JSON"}, nil},
		{"no name", `{"version": "1.0.0"}`, []string{`no "name"`}, nil},
		{"bad name", `{"name": "noslash", "version": "1.0.0"}`, []string{`"noslash"`}, nil},
		{"bad owner", `{"name": "-acme/lib", "version": "1.0.0"}`, []string{`"-acme"`}, nil},
		{"missing version", `{"name": "acme/lib"}`, []string{`no "version"`}, nil},
		{"bad version", `{"name": "acme/lib", "version": "1.0"}`, []string{`"1.0"`}, nil},
		{"bad dependency name", `{"name": "acme/lib", "version": "1.0.0", "deps": {"nodep": "1.0.0"}}`,
			[]string{`dependency "nodep"`}, nil},
		{"path dependency", `{"name": "acme/lib", "version": "1.0.0", "deps": {"acme/x": {"path": "../x"}}}`,
			[]string{`dependency "acme/x"`, "path or git dependency"}, nil},
		{"git dependency", `{"name": "acme/lib", "version": "1.0.0", "deps": {"acme/x": {"git": "https://example.com/x.git"}}}`,
			[]string{`dependency "acme/x"`, "path or git dependency"}, nil},
		{"dependency neither string nor object", `{"name": "acme/lib", "version": "1.0.0", "deps": {"acme/x": 1}}`,
			[]string{`dependency "acme/x"`, "neither a version string nor an object"}, nil},
		{"unsupported requirement", `{"name": "acme/lib", "version": "1.0.0", "deps": {"acme/x": ">=1.0"}}`,
			[]string{`dependency "acme/x"`, "unsupported version requirement"}, nil},
		{"tilde requirement", `{"name": "acme/lib", "version": "1.0.0", "deps": {"acme/x": "~1.0"}}`,
			[]string{`dependency "acme/x"`, "unsupported version requirement"}, nil},
		{"unsupported requirement in object", `{"name": "acme/lib", "version": "1.0.0", "deps": {"acme/x": {"version": "1.0, <2"}}}`,
			[]string{`dependency "acme/x"`, "unsupported version requirement"}, nil},
		{"malformed requirement", `{"name": "acme/lib", "version": "1.0.0", "deps": {"acme/x": "1.x.0"}}`,
			[]string{`dependency "acme/x"`, "invalid version requirement"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, deps, err := private.ParseManifest(manifest.JSONFile, []byte(tt.manifest))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("ParseManifest: %v", err)
				}
				if !maps.Equal(deps, tt.deps) {
					t.Errorf("deps = %v, want %v", deps, tt.deps)
				}
				if m.Name == "" || m.Version == "" {
					t.Errorf("manifest = %+v", m)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseManifest accepted it: %+v, deps %v", m, deps)
			}
			if !errors.Is(err, private.ErrInvalid) {
				t.Errorf("error %q does not wrap ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
