package private_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"moonbit-registry/internal/testsupport"
	"moonbit-registry/module"
	"moonbit-registry/private"
	"moonbit-registry/store"
	"moonbit-registry/store/disk"
)

// t0 is the injected clock's start: 10:00 in UTC+1, so 09:00 UTC.
var t0 = time.Date(2026, 11, 30, 10, 0, 0, 0, time.FixedZone("UTC+1", 3600))

const t0CreatedAt = "2026-11-30T09:00:00.000000+00:00"

var libV1 = module.Version{Module: "acme/lib", Version: "1.0.0"}

// env is a Registry over a real disk store and disk records, with a clock
// the test moves.
type env struct {
	reg     *private.Registry
	opts    private.Options
	st      *disk.Store
	recs    *disk.Records
	recDir  string
	tempDir string
	now     time.Time
}

func newEnv(t *testing.T, tweak func(*private.Options)) *env {
	t.Helper()
	root := t.TempDir()
	st, err := disk.New(disk.Options{Root: filepath.Join(root, "packages"), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{st: st, recDir: filepath.Join(root, "private"), tempDir: filepath.Join(root, "tmp"), now: t0}
	if err := os.Mkdir(e.tempDir, 0o755); err != nil {
		t.Fatal(err)
	}
	e.recs = disk.NewRecords(e.recDir)
	e.opts = private.Options{
		Owners:  []string{"acme", "team-b"},
		Records: e.recs,
		Store:   st,
		TempDir: e.tempDir,
		Now:     func() time.Time { return e.now },
	}
	if tweak != nil {
		tweak(&e.opts)
	}
	e.reg = private.New(e.opts)
	return e
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// archive is a module archive as `moon package` makes one: the manifest
// at the root, sources below. salt makes other bytes of one version.
func archive(t *testing.T, manifest, salt string) []byte {
	t.Helper()
	return zipOf(t,
		file("moon.mod.json", manifest),
		dir("src/"),
		file("src/lib.mbt", "pub fn hello() -> String { \"hello\" }\n// "+salt+"\n"),
		file("README.md", "# readme\n"),
	)
}

func manifestOf(mv module.Version, extra string) string {
	m := fmt.Sprintf(`{"name": %q, "version": %q`, mv.Module, mv.Version)
	if extra != "" {
		m += ", " + extra
	}
	return m + "}"
}

func (e *env) publish(t *testing.T, b []byte) private.Published {
	t.Helper()
	pub, err := e.reg.Publish(context.Background(), bytes.NewReader(b))
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	return pub
}

// stored returns mv's archive bytes from the store.
func (e *env) stored(t *testing.T, mv module.Version) []byte {
	t.Helper()
	obj, err := e.st.Open(context.Background(), mv)
	if err != nil {
		t.Fatalf("Open(%s): %v", mv, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	if s := obj.Info().SHA256; s != "" && s != sum(b) {
		t.Errorf("store keeps checksum %s for %s, the bytes hash to %s", s, mv, sum(b))
	}
	return b
}

// expectEmpty checks that neither an archive nor a record was stored.
func (e *env) expectEmpty(t *testing.T) {
	t.Helper()
	var archives []string
	if err := e.st.Walk(context.Background(), func(mv module.Version) error {
		archives = append(archives, mv.String())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(archives) != 0 {
		t.Errorf("the store holds %v, want nothing", archives)
	}
	keys, err := e.recs.List(context.Background())
	if err != nil || len(keys) != 0 {
		t.Errorf("records = %q, %v; want none", keys, err)
	}
	if left, _ := os.ReadDir(e.tempDir); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// lines returns the decoded lines of the .index file of mod.
func (e *env) lines(t *testing.T, mod string) []map[string]any {
	t.Helper()
	files, _, err := e.reg.Files(context.Background())
	if err != nil {
		t.Fatalf("Files: %v", err)
	}
	data, ok := files[module.IndexPath(mod)]
	if !ok {
		t.Fatalf("Files has no %s; it has %v", module.IndexPath(mod), slices.Sorted(maps.Keys(files)))
	}
	if !bytes.HasSuffix(data, []byte("\n")) {
		t.Errorf("%s does not end in a newline: %q", module.IndexPath(mod), data)
	}
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// putRecord writes a record straight into the records, as another
// replica's publish would, aged by age (by the file's mtime, which is
// what disk records judge age by).
func (e *env) putRecord(t *testing.T, mv module.Version, body string, age time.Duration) {
	t.Helper()
	if _, created, err := e.recs.Create(context.Background(), mv.String(), []byte(body)); err != nil || !created {
		t.Fatalf("Create record %s = %v, %v", mv, created, err)
	}
	if age > 0 {
		old := time.Now().Add(-age)
		if err := os.Chtimes(filepath.Join(e.recDir, filepath.FromSlash(mv.String())), old, old); err != nil {
			t.Fatal(err)
		}
	}
}

func pendingRecord(checksum string, at time.Time) string {
	return fmt.Sprintf(`{"state":"pending","checksum":%q,"updated_at":%q,"line":{}}`, checksum, at.UTC().Format(time.RFC3339Nano))
}

func TestPublishStoresAndLists(t *testing.T) {
	e := newEnv(t, nil)
	b := archive(t, manifestOf(libV1, `"deps": {"moonbitlang/x": "0.4.6", "acme/base": {"version": "^0.2"}},
		"readme": "README.md", "repository": "https://example.com/acme/lib", "license": "MIT",
		"keywords": ["a", "b"], "description": "A library"`), "")
	pub := e.publish(t, b)
	if pub.Archive != libV1 || pub.Checksum != sum(b) || pub.Existed {
		t.Errorf("Publish = %+v, want %s, checksum %s, not existed", pub, libV1, sum(b))
	}
	if got := e.stored(t, libV1); !bytes.Equal(got, b) {
		t.Errorf("stored archive differs from the published one (%d bytes, want %d)", len(got), len(b))
	}
	files, latest, err := e.reg.Files(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 {
		t.Errorf("Files = %v, want only %s", slices.Sorted(maps.Keys(files)), module.IndexPath("acme/lib"))
	}
	if !latest.Equal(t0) {
		t.Errorf("latest change = %s, want %s", latest, t0)
	}
	lines := e.lines(t, "acme/lib")
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1", len(lines))
	}
	l := lines[0]
	want := map[string]any{
		"name": "acme/lib", "version": "1.0.0", "checksum": sum(b), "created_at": t0CreatedAt,
		"readme": "README.md", "repository": "https://example.com/acme/lib", "license": "MIT", "description": "A library",
	}
	for k, v := range want {
		if l[k] != v {
			t.Errorf("line %s = %v, want %v", k, l[k], v)
		}
	}
	if deps, _ := l["deps"].(map[string]any); len(deps) != 2 || deps["moonbitlang/x"] != "0.4.6" || deps["acme/base"] != "^0.2" {
		t.Errorf("line deps = %v", l["deps"])
	}
	if kw, _ := l["keywords"].([]any); len(kw) != 2 || kw[0] != "a" || kw[1] != "b" {
		t.Errorf("line keywords = %v", l["keywords"])
	}
	for _, k := range []string{"deprecated", "yanked"} {
		if _, ok := l[k]; ok {
			t.Errorf("a fresh line has %q: %v", k, l)
		}
	}
	versions, err := e.reg.Versions(context.Background())
	if err != nil || !maps.Equal(versions, map[module.Version]string{libV1: sum(b)}) {
		t.Errorf("Versions = %v, %v", versions, err)
	}
	if left, _ := os.ReadDir(e.tempDir); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestPublishWithoutDepsWritesNoDeps(t *testing.T) {
	e := newEnv(t, nil)
	e.publish(t, archive(t, manifestOf(libV1, ""), ""))
	l := e.lines(t, "acme/lib")[0]
	if _, ok := l["deps"]; ok {
		t.Errorf("line without deps has %v", l["deps"])
	}
	if kw, ok := l["keywords"].([]any); !ok || len(kw) != 0 {
		t.Errorf("keywords = %#v, want []", l["keywords"])
	}
}

func TestPublishSameBytesAgainExisted(t *testing.T) {
	e := newEnv(t, nil)
	b := archive(t, manifestOf(libV1, ""), "")
	e.publish(t, b)
	e.now = t0.Add(time.Hour)
	pub := e.publish(t, b)
	if !pub.Existed || pub.Checksum != sum(b) || pub.Archive != libV1 {
		t.Errorf("second Publish = %+v, want Existed", pub)
	}
	// Nothing changed: the line keeps its first created_at.
	lines := e.lines(t, "acme/lib")
	if len(lines) != 1 || lines[0]["created_at"] != t0CreatedAt {
		t.Errorf("lines = %v", lines)
	}
	if _, latest, _ := e.reg.Files(context.Background()); !latest.Equal(t0) {
		t.Errorf("latest = %s, want %s", latest, t0)
	}
}

func TestPublishSameBytesRestoresALostArchive(t *testing.T) {
	e := newEnv(t, nil)
	b := archive(t, manifestOf(libV1, ""), "")
	e.publish(t, b)
	if err := e.st.Delete(context.Background(), libV1); err != nil {
		t.Fatal(err)
	}
	if pub := e.publish(t, b); !pub.Existed {
		t.Errorf("Publish = %+v, want Existed", pub)
	}
	if got := e.stored(t, libV1); !bytes.Equal(got, b) {
		t.Errorf("archive not restored")
	}
}

func TestPublishOtherBytesConflict(t *testing.T) {
	e := newEnv(t, nil)
	b := archive(t, manifestOf(libV1, ""), "first")
	e.publish(t, b)
	other := archive(t, manifestOf(libV1, ""), "second")
	pub, err := e.reg.Publish(context.Background(), bytes.NewReader(other))
	if !errors.Is(err, private.ErrConflict) {
		t.Fatalf("Publish of other bytes = %+v, %v; want ErrConflict", pub, err)
	}
	for _, s := range []string{sum(b), sum(other), "acme/lib@1.0.0"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %s", err, s)
		}
	}
	if got := e.stored(t, libV1); !bytes.Equal(got, b) {
		t.Errorf("the stored archive changed")
	}
	if l := e.lines(t, "acme/lib"); len(l) != 1 || l[0]["checksum"] != sum(b) {
		t.Errorf("lines = %v", l)
	}
}

func TestPublishNotReservedStoresNothing(t *testing.T) {
	e := newEnv(t, nil)
	for _, name := range []string{"other/lib", "acmeco/lib", "team/lib"} {
		mv := module.Version{Module: name, Version: "1.0.0"}
		_, err := e.reg.Publish(context.Background(), bytes.NewReader(archive(t, manifestOf(mv, ""), "")))
		if !errors.Is(err, private.ErrNotReserved) {
			t.Fatalf("Publish(%s) = %v, want ErrNotReserved", name, err)
		}
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
	e.expectEmpty(t)
}

// TestPublishCaseCollisions: names that differ only in case are one on
// macOS and Windows clients: a module beside a published one of another
// case, and an owner spelled unlike the reserved one, are refused and
// change nothing.
func TestPublishCaseCollisions(t *testing.T) {
	e := newEnv(t, nil)
	first := module.Version{Module: "acme/Case", Version: "1.0.0"}
	e.publish(t, archive(t, manifestOf(first, ""), ""))
	for _, tt := range []struct {
		name string
		want error
		says string
	}{
		{"acme/case", private.ErrConflict, "only in case from the published acme/Case"},
		{"acme/CASE", private.ErrConflict, "only in case from the published acme/Case"},
		{"ACME/lib", private.ErrNotReserved, "spelled acme"},
		{"Team-B/lib", private.ErrNotReserved, "spelled team-b"},
	} {
		mv := module.Version{Module: tt.name, Version: "2.0.0"}
		_, err := e.reg.Publish(context.Background(), bytes.NewReader(archive(t, manifestOf(mv, ""), "")))
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.says) {
			t.Errorf("Publish(%s) = %v, want %v saying %q", tt.name, err, tt.want, tt.says)
		}
	}
	versions, err := e.reg.Versions(context.Background())
	if err != nil || len(versions) != 1 {
		t.Errorf("published versions = %v, %v; want only %s", versions, err, first)
	}
	if !e.reg.Owns("ACME/other") {
		t.Error("ACME/other is not taken as the reserved owner acme's: upstream could serve it")
	}
}

func TestPublishTooLarge(t *testing.T) {
	b := archive(t, manifestOf(libV1, ""), "")
	e := newEnv(t, func(o *private.Options) { o.MaxArchiveSize = int64(len(b)) - 1 })
	_, err := e.reg.Publish(context.Background(), bytes.NewReader(b))
	if !errors.Is(err, private.ErrTooLarge) {
		t.Fatalf("Publish = %v, want ErrTooLarge", err)
	}
	e.expectEmpty(t)

	// At the cap exactly, it is taken.
	e = newEnv(t, func(o *private.Options) { o.MaxArchiveSize = int64(len(b)) })
	e.publish(t, b)
}

func TestPublishRefusedArchiveStoresNothing(t *testing.T) {
	e := newEnv(t, nil)
	for name, b := range map[string][]byte{
		"empty":       {},
		"not a zip":   []byte("hello"),
		"no manifest": zipOf(t, file("README.md", "x")),
		"escape":      zipOf(t, file("moon.mod.json", manifestOf(libV1, "")), file("../evil", "x")),
		"symlink": zipOf(t, file("moon.mod.json", manifestOf(libV1, "")),
			testsupport.ZipFile{Name: "l", Data: []byte("/etc/passwd"), Mode: os.ModeSymlink | 0o777}),
		"path dep": archive(t, manifestOf(libV1, `"deps": {"acme/x": {"path": "../x"}}`), ""),
	} {
		_, err := e.reg.Publish(context.Background(), bytes.NewReader(b))
		if !errors.Is(err, private.ErrInvalid) {
			t.Errorf("Publish(%s) = %v, want ErrInvalid", name, err)
		}
	}
	e.expectEmpty(t)
}

func TestSetMarks(t *testing.T) {
	e := newEnv(t, nil)
	b := archive(t, manifestOf(libV1, ""), "")
	e.publish(t, b)
	ctx := context.Background()
	reason, yes := "use 2.0.0", true
	e.now = t0.Add(time.Hour)
	if err := e.reg.SetMarks(ctx, libV1, private.Mark{Deprecated: &reason}); err != nil {
		t.Fatalf("deprecate: %v", err)
	}
	e.now = t0.Add(2 * time.Hour)
	if err := e.reg.SetMarks(ctx, libV1, private.Mark{Yanked: &yes}); err != nil {
		t.Fatalf("yank: %v", err)
	}
	files, latest, err := e.reg.Files(ctx)
	if err != nil {
		t.Fatal(err)
	}
	line := string(files[module.IndexPath("acme/lib")])
	for _, want := range []string{`"deprecated":"use 2.0.0"`, `"yanked":true`, `"created_at":"` + t0CreatedAt + `"`} {
		if !strings.Contains(line, want) {
			t.Errorf("line %s lacks %s", line, want)
		}
	}
	if !latest.Equal(t0.Add(2 * time.Hour)) {
		t.Errorf("latest = %s, want the yank's time %s", latest, t0.Add(2*time.Hour))
	}
	// The archive stays for those who locked the version.
	if got := e.stored(t, libV1); !bytes.Equal(got, b) {
		t.Errorf("archive changed")
	}

	// Restored.
	none, no := "", false
	if err := e.reg.SetMarks(ctx, libV1, private.Mark{Deprecated: &none, Yanked: &no}); err != nil {
		t.Fatal(err)
	}
	l := e.lines(t, "acme/lib")[0]
	if _, ok := l["deprecated"]; ok {
		t.Errorf("still deprecated: %v", l)
	}
	if _, ok := l["yanked"]; ok {
		t.Errorf("still yanked: %v", l)
	}
}

func TestSetMarksRefusals(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	yes := true
	e.publish(t, archive(t, manifestOf(libV1, ""), ""))
	for _, tc := range []struct {
		mv   module.Version
		want error
	}{
		{module.Version{Module: "acme/lib", Version: "1.0.1"}, private.ErrUnknown},
		{module.Version{Module: "acme/nope", Version: "1.0.0"}, private.ErrUnknown},
		{module.Version{Module: "other/lib", Version: "1.0.0"}, private.ErrNotReserved},
		{module.Version{Module: "acme/lib", Version: "1.0"}, private.ErrInvalid},
		{module.Version{Module: "acme", Version: "1.0.0"}, private.ErrInvalid},
	} {
		if err := e.reg.SetMarks(ctx, tc.mv, private.Mark{Yanked: &yes}); !errors.Is(err, tc.want) {
			t.Errorf("SetMarks(%s) = %v, want %v", tc.mv, err, tc.want)
		}
	}
	// A version still pending is not known either.
	pend := module.Version{Module: "acme/lib", Version: "2.0.0"}
	e.putRecord(t, pend, pendingRecord(strings.Repeat("0", 64), t0), 0)
	if err := e.reg.SetMarks(ctx, pend, private.Mark{Yanked: &yes}); !errors.Is(err, private.ErrUnknown) {
		t.Errorf("SetMarks(pending) = %v, want ErrUnknown", err)
	}
}

// A publish that died after claiming a version (its record pending for
// more than ten minutes) does not block the version: a publish of other
// bytes takes it over.
func TestPublishTakesOverADeadPublish(t *testing.T) {
	e := newEnv(t, nil)
	dead := archive(t, manifestOf(libV1, ""), "dead")
	e.putRecord(t, libV1, pendingRecord(sum(dead), t0.Add(-time.Hour)), 11*time.Minute)
	b := archive(t, manifestOf(libV1, ""), "alive")
	pub := e.publish(t, b)
	if pub.Existed || pub.Checksum != sum(b) {
		t.Errorf("Publish = %+v", pub)
	}
	if got := e.stored(t, libV1); !bytes.Equal(got, b) {
		t.Errorf("stored archive is not the new one")
	}
	if l := e.lines(t, "acme/lib"); len(l) != 1 || l[0]["checksum"] != sum(b) || l[0]["created_at"] != t0CreatedAt {
		t.Errorf("lines = %v", l)
	}
}

// A publish of other bytes under way (pending for less than ten minutes)
// is not taken over.
func TestPublishDoesNotTakeOverALivePublish(t *testing.T) {
	e := newEnv(t, nil)
	live := archive(t, manifestOf(libV1, ""), "live")
	e.putRecord(t, libV1, pendingRecord(sum(live), t0), 9*time.Minute)
	_, err := e.reg.Publish(context.Background(), bytes.NewReader(archive(t, manifestOf(libV1, ""), "other")))
	if !errors.Is(err, private.ErrConflict) {
		t.Fatalf("Publish = %v, want ErrConflict", err)
	}
	if _, err := e.st.Open(context.Background(), libV1); !errors.Is(err, store.ErrNotExist) {
		t.Errorf("an archive was stored: %v", err)
	}
	if files, _, err := e.reg.Files(context.Background()); err != nil || len(files) != 0 {
		t.Errorf("Files = %v, %v; want none (the version is pending)", files, err)
	}
}

// A publish of the same bytes as a pending record (its publish died, or
// the client retried) resumes it, at any age.
func TestPublishResumesAPendingRecordOfTheSameBytes(t *testing.T) {
	for _, age := range []time.Duration{0, time.Hour} {
		t.Run(age.String(), func(t *testing.T) {
			e := newEnv(t, nil)
			b := archive(t, manifestOf(libV1, ""), "")
			e.putRecord(t, libV1, pendingRecord(sum(b), t0.Add(-age)), age)
			pub := e.publish(t, b)
			if pub.Existed || pub.Checksum != sum(b) {
				t.Errorf("Publish = %+v", pub)
			}
			if got := e.stored(t, libV1); !bytes.Equal(got, b) {
				t.Errorf("stored archive differs")
			}
			if l := e.lines(t, "acme/lib"); len(l) != 1 || l[0]["checksum"] != sum(b) {
				t.Errorf("lines = %v", l)
			}
		})
	}
}

// hookRecords runs hook once, before the first Swap.
type hookRecords struct {
	store.Records
	hook func()
}

func (h *hookRecords) Swap(ctx context.Context, key string, body []byte, etag string) (string, bool, error) {
	if f := h.hook; f != nil {
		h.hook = nil
		f()
	}
	return h.Records.Swap(ctx, key, body, etag)
}

// Two publishes of the same bytes at once (a client retrying while its
// first attempt is still storing): the second resumes the first's pending
// record, and the first finishes before it. The version is then published
// with exactly these bytes, so the second succeeds too, as a re-publish of
// identical bytes does.
func TestPublishSameBytesRacingAFinishingPublish(t *testing.T) {
	e := newEnv(t, nil)
	b := archive(t, manifestOf(libV1, ""), "")
	first := pendingRecord(sum(b), t0)
	e.putRecord(t, libV1, first, 0)
	_, firstETag, _, _, err := e.recs.Read(context.Background(), libV1.String())
	if err != nil {
		t.Fatal(err)
	}
	finished := fmt.Sprintf(`{"state":"published","checksum":%q,"updated_at":%q,"line":{"name":"acme/lib","version":"1.0.0","readme":"","repository":"","license":"","keywords":[],"description":"","checksum":%q,"created_at":%q}}`,
		sum(b), t0.UTC().Format(time.RFC3339Nano), sum(b), t0CreatedAt)
	h := &hookRecords{Records: e.recs}
	h.hook = func() {
		// The first publish stores the same archive and finishes.
		if _, err := store.PutVerified(context.Background(), e.st, libV1, bytes.NewReader(b), store.Meta{SHA256: sum(b), Size: int64(len(b))}); err != nil {
			t.Error(err)
		}
		if _, ok, err := e.recs.Swap(context.Background(), libV1.String(), []byte(finished), firstETag); err != nil || !ok {
			t.Errorf("the first publish's swap = %v, %v", ok, err)
		}
	}
	opts := e.opts
	opts.Records = h
	reg := private.New(opts)
	pub, err := reg.Publish(context.Background(), bytes.NewReader(b))
	if err != nil {
		t.Errorf("second Publish of the same bytes = %v; want success (the version holds exactly these bytes)", err)
	}
	if pub.Checksum != sum(b) {
		t.Errorf("Publish = %+v", pub)
	}
	if l := e.lines(t, "acme/lib"); len(l) != 1 || l[0]["checksum"] != sum(b) {
		t.Errorf("lines = %v", l)
	}
}

func TestFilesInPublishOrder(t *testing.T) {
	e := newEnv(t, nil)
	at := func(d time.Duration, mv module.Version) {
		e.now = t0.Add(d)
		e.publish(t, archive(t, manifestOf(mv, ""), ""))
	}
	v := func(mod, ver string) module.Version { return module.Version{Module: mod, Version: ver} }
	// Publish order is not version order; equal times fall back to
	// semver precedence (1.9.0 before 1.10.0).
	at(0, v("acme/lib", "0.2.0"))
	at(time.Minute, v("team-b/tool", "1.0.0"))
	at(2*time.Minute, v("acme/lib", "0.1.0"))
	at(3*time.Minute, v("acme/lib", "1.10.0"))
	at(3*time.Minute, v("acme/lib", "1.9.0"))
	at(4*time.Minute, v("acme/lib/sub", "0.0.1"))
	at(time.Microsecond+4*time.Minute, v("acme/lib", "0.3.0"))

	var got []string
	for _, l := range e.lines(t, "acme/lib") {
		got = append(got, fmt.Sprint(l["version"]))
	}
	if want := []string{"0.2.0", "0.1.0", "1.9.0", "1.10.0", "0.3.0"}; !slices.Equal(got, want) {
		t.Errorf("acme/lib lines in order %v, want %v", got, want)
	}
	files, latest, err := e.reg.Files(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{"user/acme/lib.index", "user/acme/lib/sub.index", "user/team-b/tool.index"}
	if got := slices.Sorted(maps.Keys(files)); !slices.Equal(got, wantFiles) {
		t.Errorf("files %v, want %v", got, wantFiles)
	}
	if !latest.Equal(t0.Add(4*time.Minute + time.Microsecond)) {
		t.Errorf("latest = %s", latest)
	}
	versions, err := e.reg.Versions(context.Background())
	if err != nil || len(versions) != 7 {
		t.Errorf("Versions = %v, %v; want 7", versions, err)
	}
}

// Records of an owner no longer reserved stay in the store but are not
// served; pending records and strays are not served either.
func TestFilesServeOnlyPublishedVersionsOfReservedOwners(t *testing.T) {
	e := newEnv(t, nil)
	tool := module.Version{Module: "team-b/tool", Version: "1.0.0"}
	p1 := e.publish(t, archive(t, manifestOf(libV1, ""), ""))
	p2 := e.publish(t, archive(t, manifestOf(tool, ""), ""))
	e.putRecord(t, module.Version{Module: "acme/lib", Version: "2.0.0"}, pendingRecord(strings.Repeat("0", 64), t0), 0)
	for key, body := range map[string]string{
		"acme/stray":       `{"state":"published"}`,
		"acme/bad@3.0.0":   `not json`,
		"acme/other@1.0.0": `{"state":"published","checksum":"x","line":{"name":"acme/lib","version":"1.0.0"}}`,
	} {
		if _, _, err := e.recs.Create(context.Background(), key, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	versions, err := e.reg.Versions(context.Background())
	if want := map[module.Version]string{libV1: p1.Checksum, tool: p2.Checksum}; err != nil || !maps.Equal(versions, want) {
		t.Errorf("Versions = %v, %v; want %v", versions, err, want)
	}
	if got := e.lines(t, "acme/lib"); len(got) != 1 {
		t.Errorf("acme/lib lines = %v, want the one published", got)
	}

	opts := e.opts
	opts.Owners = []string{"team-b"}
	reg := private.New(opts)
	files, _, err := reg.Files(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(maps.Keys(files)); !slices.Equal(got, []string{"user/team-b/tool.index"}) {
		t.Errorf("files = %v, want only team-b's", got)
	}
	if versions, err := reg.Versions(context.Background()); err != nil || len(versions) != 1 || versions[tool] == "" {
		t.Errorf("Versions with team-b alone = %v, %v", versions, err)
	}
}

// A publish the registry takes must show in the index: a long
// description (which the index line carries, JSON-escaped) either is
// refused up front or is listed afterwards, and never makes Files fail.
func TestPublishLongDescriptionListed(t *testing.T) {
	e := newEnv(t, nil)
	desc := strings.Repeat("<p>", 100<<10) // 300 KiB in the manifest, 1.3 MiB escaped
	b := archive(t, manifestOf(libV1, fmt.Sprintf(`"description": %q`, desc)), "")
	pub, err := e.reg.Publish(context.Background(), bytes.NewReader(b))
	if err != nil {
		if !errors.Is(err, private.ErrInvalid) {
			t.Fatalf("Publish = %v; want success or ErrInvalid", err)
		}
		e.expectEmpty(t)
		return
	}
	files, _, err := e.reg.Files(context.Background())
	if err != nil {
		t.Fatalf("Publish of %d bytes took it (%+v), then Files fails for every private module: %v", len(b), pub, err)
	}
	if _, ok := files[module.IndexPath("acme/lib")]; !ok {
		t.Errorf("Publish took it (%+v) but Files does not list it", pub)
	}
	if _, err := e.reg.Versions(context.Background()); err != nil {
		t.Errorf("Versions: %v", err)
	}
}

// TestPublishBuildMetadataIsOneVersion: 1.0.0, 1.0.0+x and 1.0.0+y.z are
// one version (semver precedence ignores build metadata, as crates.io
// does): the first publish claims it, the others are conflicts that
// change nothing, and deprecating a sibling spelling finds nothing.
func TestPublishBuildMetadataIsOneVersion(t *testing.T) {
	for _, first := range []string{"1.0.0", "1.0.0+x"} {
		t.Run(first, func(t *testing.T) {
			e := newEnv(t, nil)
			claimed := module.Version{Module: "acme/lib", Version: first}
			b := archive(t, manifestOf(claimed, ""), "first")
			e.publish(t, b)
			for _, v := range []string{"1.0.0", "1.0.0+x", "1.0.0+y.z"} {
				if v == first {
					continue
				}
				mv := module.Version{Module: "acme/lib", Version: v}
				other := archive(t, manifestOf(mv, ""), "other "+v)
				pub, err := e.reg.Publish(context.Background(), bytes.NewReader(other))
				if !errors.Is(err, private.ErrConflict) || !strings.Contains(err.Error(), "published as "+first) {
					t.Errorf("publish %s after %s = %+v, %v; want ErrConflict naming %s", v, first, pub, err, first)
				}
				gone := "gone"
				if err := e.reg.SetMarks(context.Background(), mv, private.Mark{Deprecated: &gone}); !errors.Is(err, private.ErrUnknown) {
					t.Errorf("deprecate %s: %v, want ErrUnknown", v, err)
				}
			}
			if l := e.lines(t, "acme/lib"); len(l) != 1 || l[0]["version"] != first || l[0]["checksum"] != sum(b) || l[0]["deprecated"] != nil {
				t.Errorf("lines = %v", l)
			}
		})
	}
}

// TestPublishRefusesUnresolvableDependencies: a dependency that no
// version in the served index satisfies is refused (400) naming it, and
// nothing is stored; one the index can satisfy is taken.
func TestPublishRefusesUnresolvableDependencies(t *testing.T) {
	idx := &mapIndex{"pub/util": {"1.0.0", "1.2.0"}}
	e := newEnv(t, nil)
	e.reg.UseIndex(idx)
	for _, tt := range []struct{ deps, says string }{
		{`"deps": {"nonexist/zzz": "1.0.0"}`, `dependency "nonexist/zzz": no version`},
		{`"deps": {"pub/util": "2.0.0"}`, `dependency "pub/util": no version of it in this registry's index satisfies "2.0.0"`},
		{`"deps": {"pub/util": "1.0.0", "nonexist/zzz": "1.0.0"}`, `"nonexist/zzz"`},
	} {
		_, err := e.reg.Publish(context.Background(), bytes.NewReader(archive(t, manifestOf(libV1, tt.deps), "")))
		if !errors.Is(err, private.ErrInvalid) || !strings.Contains(err.Error(), tt.says) {
			t.Errorf("deps %s: %v, want ErrInvalid saying %q", tt.deps, err, tt.says)
		}
	}
	e.expectEmpty(t)
	e.publish(t, archive(t, manifestOf(libV1, `"deps": {"pub/util": "1.1.0"}`), ""))
}

// TestRecordsKeptUnderTheWholeVersion: a version with build metadata
// published before versions were claimed without it has its record under
// the whole version. It stays listed, can be deprecated, is published
// again by its own bytes, and still holds its siblings off.
func TestRecordsKeptUnderTheWholeVersion(t *testing.T) {
	e := newEnv(t, nil)
	old := module.Version{Module: "acme/lib", Version: "1.0.0+x"}
	b := archive(t, manifestOf(old, ""), "old")
	e.publish(t, b)
	// Move the record to the key the older code used.
	ctx := context.Background()
	body, _, _, found, err := e.recs.Read(ctx, "acme/lib@1.0.0")
	if err != nil || !found {
		t.Fatalf("record under acme/lib@1.0.0: %v %v", found, err)
	}
	if _, created, err := e.recs.Create(ctx, old.String(), body); err != nil || !created {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(e.recDir, "acme", "lib@1.0.0")); err != nil {
		t.Fatal(err)
	}
	if keys, _ := e.recs.List(ctx); !slices.Equal(keys, []string{old.String()}) {
		t.Fatalf("records = %q", keys)
	}

	if l := e.lines(t, "acme/lib"); len(l) != 1 || l[0]["version"] != old.Version {
		t.Fatalf("lines = %v", l)
	}
	if pub, err := e.reg.Publish(ctx, bytes.NewReader(b)); err != nil || !pub.Existed {
		t.Errorf("the same bytes again = %+v, %v; want Existed", pub, err)
	}
	reason := "use 2.0.0"
	if err := e.reg.SetMarks(ctx, old, private.Mark{Deprecated: &reason}); err != nil {
		t.Errorf("deprecate %s: %v", old, err)
	}
	for _, v := range []string{"1.0.0", "1.0.0+y"} {
		mv := module.Version{Module: "acme/lib", Version: v}
		if _, err := e.reg.Publish(ctx, bytes.NewReader(archive(t, manifestOf(mv, ""), v))); !errors.Is(err, private.ErrConflict) {
			t.Errorf("publish %s beside the old %s: %v, want ErrConflict", v, old, err)
		}
	}
	if l := e.lines(t, "acme/lib"); len(l) != 1 || l[0]["version"] != old.Version || l[0]["deprecated"] != reason {
		t.Errorf("lines = %v", l)
	}
}

// mapIndex is a served index of the given module versions.
type mapIndex map[string][]string

func (m *mapIndex) Versions(_ context.Context, mod string) ([]string, error) { return (*m)[mod], nil }
func (m *mapIndex) Recompose(context.Context) error                          { return nil }
