package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"moonbit-registry/internal/testupstream"
)

// The dependency chain used below, worked out by hand from the snapshot's
// .index files: AdUhTkJm/wasmtools@0.1.0 needs AdUhTkJm/u8str ^0.1.5,
// AdUhTkJm/bitviewer ^0.1.10 and moonbitlang/x ^0.4.30; u8str@0.1.5 needs
// bitviewer ^0.1.8. Each requirement takes its lowest satisfying version.
var mirWasmtoolsClosure = []string{
	"AdUhTkJm/bitviewer@0.1.10", "AdUhTkJm/bitviewer@0.1.8", "AdUhTkJm/u8str@0.1.5",
	"AdUhTkJm/wasmtools@0.1.0", "moonbitlang/x@0.4.30",
}

// mirChainUpstream serves every version of the modules in that chain.
func mirChainUpstream(t *testing.T) *testupstream.Upstream {
	t.Helper()
	return startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{
		testupstream.EveryVersion("AdUhTkJm/wasmtools"),
		testupstream.EveryVersion("AdUhTkJm/u8str"),
		testupstream.EveryVersion("AdUhTkJm/bitviewer"),
		testupstream.EveryVersion("moonbitlang/x"),
	}})
}

// mirStored lists what is under <root>/data/packages as sorted
// "module@version" for published archives; anything else (temporary files)
// is listed by its path with a "?" in front, so exact comparisons catch it.
func mirStored(t testing.TB, root string) []string {
	t.Helper()
	dir := filepath.Join(root, "data", "packages")
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		module, file := filepath.ToSlash(filepath.Dir(rel)), filepath.Base(rel)
		version, isZip := strings.CutSuffix(file, ".zip")
		if !isZip || strings.HasPrefix(rel, ".") || !strings.Contains(module, "/") {
			out = append(out, "?"+rel)
			return nil
		}
		out = append(out, module+"@"+version)
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// mirPublished is mirStored without temporary files.
func mirPublished(t testing.TB, root string) []string {
	return slices.DeleteFunc(mirStored(t, root), func(s string) bool { return strings.HasPrefix(s, "?") })
}

// mirArchivePath is the decoded path the test upstream counts for an
// archive given as "module@version".
func mirArchivePath(mv string) string {
	module, version, _ := strings.Cut(mv, "@")
	return testupstream.PrefixArchives + module + "/" + version + ".zip"
}

// mirArchiveRequests is the upstream's request counts for archives only.
func mirArchiveRequests(up *testupstream.Upstream) map[string]int {
	out := map[string]int{}
	for p, n := range up.Counts() {
		if strings.HasPrefix(p, testupstream.PrefixArchives) {
			out[p] = n
		}
	}
	return out
}

// mirOnce is the request counts expected when each archive was asked for
// exactly once.
func mirOnce(mvs []string) map[string]int {
	out := map[string]int{}
	for _, mv := range mvs {
		out[mirArchivePath(mv)] = 1
	}
	return out
}

func mirSameCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if n, ok := b[k]; !ok || n != v {
			return false
		}
	}
	return true
}

// mirCheckBytes fails unless every stored archive holds exactly the bytes
// the upstream serves for it.
func mirCheckBytes(t testing.TB, up *testupstream.Upstream, root string, mvs []string) {
	t.Helper()
	for _, mv := range mvs {
		module, version, _ := strings.Cut(mv, "@")
		got, err := os.ReadFile(filepath.Join(root, "data", "packages", filepath.FromSlash(module), version+".zip"))
		want := up.Downloads.Archive(module, version)
		if err != nil || want == nil || !bytes.Equal(got, want) {
			t.Errorf("%s: stored %d bytes (err %v), upstream serves %d", mv, len(got), err, len(want))
		}
	}
}

var mirSummaryLine = regexp.MustCompile(`(?m)^selected (\d+), already cached (\d+), fetched (\d+) \(([0-9.]+ (?:B|KiB|MiB|GiB))\), failed (\d+)$`)

// mirCheckSummary checks mirror's summary line.
func mirCheckSummary(t testing.TB, stdout string, selected, cached, fetched, failed int) {
	t.Helper()
	m := mirSummaryLine.FindStringSubmatch(stdout)
	if m == nil {
		t.Errorf("no summary line in stdout:\n%s", stdout)
		return
	}
	got := []string{m[1], m[2], m[3], m[5]}
	want := []string{strconv.Itoa(selected), strconv.Itoa(cached), strconv.Itoa(fetched), strconv.Itoa(failed)}
	if !slices.Equal(got, want) {
		t.Errorf("summary %q: want selected %d, cached %d, fetched %d, failed %d", m[0], selected, cached, fetched, failed)
	}
	if (fetched == 0) != (m[4] == "0 B") {
		t.Errorf("summary %q: fetched %d archives but reports %s", m[0], fetched, m[4])
	}
}

func mirVersionsOf(module string, versions []string) []string {
	out := make([]string, 0, len(versions))
	for _, v := range versions {
		out = append(out, module+"@"+v)
	}
	return out
}

func mirSorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestMirrorStrictModule: `mirror --strict moonbitlang/x` fetches every
// version of that module, a yanked one too (moon's resolver can still
// select it), once, and nothing else; a second run fetches nothing.
func TestMirrorStrictModule(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{
		testupstream.EveryVersion("moonbitlang/x"),
		testupstream.EveryVersion("moonbitlang/lex/runtime"), // served but not asked for
	}})
	// The snapshot has no yanked versions: yank 0.4.22 with a later line (its
	// archive stays served).
	yank := fmt.Sprintf(`{"name": "moonbitlang/x", "version": "0.4.22", "checksum": %q, "yanked": true}`, up.Downloads.Checksum("moonbitlang/x", "0.4.22"))
	if err := up.Index.AddVersionRaw(ctx, "moonbitlang/x", []byte(yank)); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, v := range up.Index.Versions("moonbitlang/x") {
		want = append(want, "moonbitlang/x@"+v)
	}
	want = mirSorted(want)
	if len(want) != 43 {
		t.Fatalf("upstream has %d versions of moonbitlang/x, the snapshot 43", len(want))
	}

	root := t.TempDir()
	stdout, stderr, code := runRegistry(t, root, up.URL(), "mirror", "--strict", "moonbitlang/x")
	if code != 0 {
		t.Fatalf("mirror: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if got := mirStored(t, root); !slices.Equal(got, want) {
		t.Errorf("stored %d files:\n%q\nwant %d:\n%q", len(got), got, len(want), want)
	}
	if got := mirArchiveRequests(up); !mirSameCounts(got, mirOnce(want)) {
		t.Errorf("upstream archive requests %v, want each of the %d versions once", got, len(want))
	}
	mirCheckBytes(t, up, root, want)
	mirCheckSummary(t, stdout, 43, 0, 43, 0)

	// Everything is cached: nothing is fetched again.
	up.ResetCounts()
	stdout, stderr, code = runRegistry(t, root, up.URL(), "mirror", "--strict", "moonbitlang/x")
	if code != 0 {
		t.Fatalf("second mirror: exit %d\n%s\n%s", code, stdout, stderr)
	}
	mirCheckSummary(t, stdout, 43, 43, 0, 0)
	if got := mirArchiveRequests(up); len(got) != 0 {
		t.Errorf("second mirror asked upstream for archives: %v", got)
	}
}

// TestMirrorClosureServedOffline mirrors a module with a dependency chain,
// then serves it with upstream down to a moon-like client that resolves a
// project depending on that module.
func TestMirrorClosureServedOffline(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	up := mirChainUpstream(t)
	root := t.TempDir()
	stdout, stderr, code := runRegistry(t, root, up.URL(), "mirror", "AdUhTkJm/wasmtools")
	if code != 0 {
		t.Fatalf("mirror: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	want := mirSorted(mirWasmtoolsClosure)
	if got := mirStored(t, root); !slices.Equal(got, want) {
		t.Errorf("stored:\n%q\nwant:\n%q", got, want)
	}
	if got := mirArchiveRequests(up); !mirSameCounts(got, mirOnce(want)) {
		t.Errorf("upstream archive requests %v, want each of %q once", got, want)
	}
	mirCheckSummary(t, stdout, len(want), 0, len(want), 0)

	if err := up.Down(); err != nil {
		t.Fatal(err)
	}
	reg := startRegistry(t, registryOptions{Root: root, UpstreamURL: up.URL()})
	client := newMoonClient(t, reg.URL)
	if err := client.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}
	need := mirResolve(t, client, map[string]string{"AdUhTkJm/wasmtools": "0.1.0"})
	if !slices.Equal(need, want) {
		t.Fatalf("the client resolves %q, the mirror holds %q", need, want)
	}
	for _, mv := range need {
		module, version, _ := strings.Cut(mv, "@")
		body, err := client.Download(ctx, module, version)
		if err != nil {
			t.Errorf("download %s through the proxy: %v", mv, err)
			continue
		}
		if !bytes.Equal(body, up.Downloads.Archive(module, version)) {
			t.Errorf("%s: the proxy served other bytes than upstream published", mv)
		}
	}
	// mirror kept symbols.zip too: moon update works offline.
	if body, err := client.Symbols(ctx); err != nil {
		t.Errorf("symbols.zip with upstream down after mirror: %v", err)
	} else if !bytes.Equal(body, up.Downloads.Symbols()) {
		t.Errorf("symbols.zip: the proxy served other bytes than upstream published")
	}
}

// TestMirrorDeprecatedAndLatest: a deprecated version is mirrored like any
// other (moon's resolver can select it); --latest passes over it and says
// so; --no-symbols leaves symbols.zip alone.
func TestMirrorDeprecatedAndLatest(t *testing.T) {
	t.Parallel()
	// mizchi/git@0.2.0 carries "deprecated" in the real snapshot.
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{testupstream.EveryVersion("mizchi/git")}})
	root := t.TempDir()
	stdout, stderr, code := runRegistry(t, root, up.URL(), "mirror", "--strict", "--no-symbols", "mizchi/git")
	if code != 0 {
		t.Fatalf("mirror: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	want := []string{"mizchi/git@0.1.1", "mizchi/git@0.1.2", "mizchi/git@0.2.0"}
	if got := mirStored(t, root); !slices.Equal(got, want) {
		t.Errorf("stored %q, want %q (the deprecated version too)", got, want)
	}
	if n := up.Count("/symbols.zip"); n != 0 {
		t.Errorf("--no-symbols: symbols.zip asked for %d times", n)
	}

	root = t.TempDir()
	stdout, stderr, code = runRegistry(t, root, up.URL(), "mirror", "--strict", "--latest", "mizchi/git")
	if code != 0 {
		t.Fatalf("mirror --latest: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if got := mirStored(t, root); !slices.Equal(got, []string{"mizchi/git@0.1.2"}) {
		t.Errorf("--latest stored %q, want the newest version that is not deprecated", got)
	}
	if !strings.Contains(stdout, "skipped (deprecated (This package has been renamed to mizchi/bit. Please use mizchi/bit instead.); --latest takes the newest version that is not): mizchi/git@0.2.0\n") {
		t.Errorf("--latest does not say it passed over the deprecated version:\n%s", stdout)
	}
	if n := up.Count("/symbols.zip"); n != 1 {
		t.Errorf("mirror asked upstream for symbols.zip %d times, want 1", n)
	}
}

// TestMirrorFromProject: --from mirrors exactly what a moon.mod.json needs;
// its path dependency is reported as skipped.
func TestMirrorFromProject(t *testing.T) {
	t.Parallel()
	up := mirChainUpstream(t)
	project := filepath.Join(t.TempDir(), "moon.mod.json")
	mod := `{
  "name": "me/app",
  "version": "0.1.0",
  "deps": {
    "AdUhTkJm/u8str": "0.1.4",
    "moonbitlang/x": {"version": "0.4.30"},
    "me/local": {"path": "../local"}
  }
}
`
	if err := os.WriteFile(project, []byte(mod), 0o644); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	stdout, stderr, code := runRegistry(t, root, up.URL(), "mirror", "--from", project)
	if code != 0 {
		t.Fatalf("mirror --from: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	// u8str ^0.1.4 -> 0.1.4, which needs bitviewer ^0.1.8 -> 0.1.8; x ^0.4.30 -> 0.4.30.
	want := []string{"AdUhTkJm/bitviewer@0.1.8", "AdUhTkJm/u8str@0.1.4", "moonbitlang/x@0.4.30"}
	if got := mirStored(t, root); !slices.Equal(got, want) {
		t.Errorf("stored:\n%q\nwant:\n%q", got, want)
	}
	if got := mirArchiveRequests(up); !mirSameCounts(got, mirOnce(want)) {
		t.Errorf("upstream archive requests %v, want each of %q once", got, want)
	}
	mirCheckBytes(t, up, root, want)
	if !strings.Contains(stdout, "skipped (path or git dependency: not in the registry): me/local (required by moon.mod.json)") {
		t.Errorf("the path dependency is not reported as skipped:\n%s", stdout)
	}
	mirCheckSummary(t, stdout, 3, 0, 3, 0)
}

// TestMirrorFromConfig: without patterns, mirror takes [mirror] packages.
func TestMirrorFromConfig(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{
		testupstream.EveryVersion("moonbitlang/lex/runtime"),
	}})
	root := t.TempDir()
	cfg := "[mirror]\npackages = [\"moonbitlang/lex/runtime\"]\nconcurrency = 1\n"
	if err := os.WriteFile(filepath.Join(root, "registry.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runRegistry(t, root, up.URL(), "mirror", "--strict")
	if code != 0 {
		t.Fatalf("mirror: exit %d\n%s\n%s", code, stdout, stderr)
	}
	want := []string{"moonbitlang/lex/runtime@0.1.0", "moonbitlang/lex/runtime@0.1.1"}
	if got := mirStored(t, root); !slices.Equal(got, want) {
		t.Errorf("stored %q, want %q", got, want)
	}
}

// TestMirrorDryRun lists without fetching, and tells cached from missing.
func TestMirrorDryRun(t *testing.T) {
	t.Parallel()
	up := mirChainUpstream(t)
	root := t.TempDir()
	stdout, stderr, code := runRegistry(t, root, up.URL(), "mirror", "--dry-run", "AdUhTkJm/wasmtools")
	if code != 0 {
		t.Fatalf("mirror --dry-run: exit %d\n%s\n%s", code, stdout, stderr)
	}
	// The listing is in module, then semver order.
	var wantOut []string
	for _, mv := range []string{"AdUhTkJm/bitviewer@0.1.8", "AdUhTkJm/bitviewer@0.1.10", "AdUhTkJm/u8str@0.1.5", "AdUhTkJm/wasmtools@0.1.0", "moonbitlang/x@0.4.30"} {
		wantOut = append(wantOut, mv+"\tto fetch")
	}
	if got := mirListed(stdout); !slices.Equal(got, wantOut) {
		t.Errorf("dry run listed:\n%q\nwant:\n%q", got, wantOut)
	}
	if !strings.Contains(stdout, "\n5 archives selected\n") {
		t.Errorf("no count line:\n%s", stdout)
	}
	if got := mirArchiveRequests(up); len(got) != 0 {
		t.Errorf("dry run asked upstream for archives: %v", got)
	}
	if got := mirStored(t, root); len(got) != 0 {
		t.Errorf("dry run stored %q", got)
	}

	// With one archive cached, the dry run says so and still fetches nothing.
	if stdout, stderr, code := runRegistry(t, root, up.URL(), "mirror", "--strict", "AdUhTkJm/u8str@0.1.5"); code != 0 {
		t.Fatalf("mirror: exit %d\n%s\n%s", code, stdout, stderr)
	}
	up.ResetCounts()
	stdout, _, code = runRegistry(t, root, up.URL(), "mirror", "--dry-run", "AdUhTkJm/wasmtools")
	if code != 0 || !strings.Contains(stdout, "AdUhTkJm/u8str@0.1.5\tcached\n") || !strings.Contains(stdout, "AdUhTkJm/wasmtools@0.1.0\tto fetch\n") {
		t.Errorf("second dry run: exit %d\n%s", code, stdout)
	}
	if got := mirArchiveRequests(up); len(got) != 0 {
		t.Errorf("second dry run asked upstream for archives: %v", got)
	}
	if got := mirStored(t, root); !slices.Equal(got, []string{"AdUhTkJm/u8str@0.1.5"}) {
		t.Errorf("stored %q after the dry run", got)
	}
}

// mirListed returns a dry run's "module@version<TAB>state" lines.
func mirListed(stdout string) []string {
	var out []string
	for _, l := range strings.Split(stdout, "\n") {
		if strings.Contains(l, "\t") {
			out = append(out, l)
		}
	}
	return out
}

// TestMirrorResumesAfterKill kills a mirror half-way; the next run fetches
// only what is missing and leaves a store verify finds clean.
func TestMirrorResumesAfterKill(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{
		testupstream.EveryVersion("moonbitlang/x"),
	}})
	all := mirSorted(mirVersionsOf("moonbitlang/x", up.Index.Versions("moonbitlang/x")))
	// Slow archives so the run is still going when it is killed: 43
	// archives, two at a time, 150ms each, take over 3s.
	up.Faults.Delay(150*time.Millisecond, testupstream.OnPrefix(testupstream.PrefixArchives))
	root := t.TempDir()
	cmd := exec.Command(registryBin, "--dir", root, "--log-format", "json",
		"mirror", "--strict", "--concurrency", "2", "moonbitlang/x")
	cmd.Env = append(os.Environ(), upstreamEnv(up.URL())...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })

	deadline := time.Now().Add(2 * time.Minute)
	for len(mirPublished(t, root)) < 5 {
		select {
		case <-exited:
			t.Fatalf("mirror exited (%v) before it could be killed:\n%s", cmd.ProcessState, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than 5 archives stored after 2 minutes:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	before := mirPublished(t, root)
	if len(before) >= len(all) {
		t.Fatalf("the mirror finished before it was killed (%d archives)", len(before))
	}
	countsBefore := mirArchiveRequests(up)
	for _, mv := range before {
		if n := countsBefore[mirArchivePath(mv)]; n != 1 {
			t.Fatalf("%s stored after %d upstream requests, want 1", mv, n)
		}
	}

	up.Faults.Clear()
	stdout, stderr, code := runRegistry(t, root, up.URL(), "mirror", "--strict", "moonbitlang/x")
	if code != 0 {
		t.Fatalf("mirror after kill: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	mirCheckSummary(t, stdout, len(all), len(before), len(all)-len(before), 0)
	after := mirArchiveRequests(up)
	for _, mv := range before {
		if n := after[mirArchivePath(mv)]; n != 1 {
			t.Errorf("%s was stored before the kill but asked for %d times in all", mv, n)
		}
	}
	if got := mirStored(t, root); !slices.Equal(got, all) {
		t.Errorf("stored after resume (%d):\n%q\nwant (%d):\n%q", len(got), got, len(all), all)
	}
	mirCheckBytes(t, up, root, all)

	stdout, stderr, code = runRegistry(t, root, up.URL(), "verify")
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("checked %d archives, 0 problems", len(all))) {
		t.Errorf("verify: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}

// TestVerifyCorruptArchive: verify finds a cached archive whose bytes were
// changed, --purge removes it, and the next request through a server
// fetches the right bytes again.
func TestVerifyCorruptArchive(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	up := mirChainUpstream(t)
	root := t.TempDir()
	if stdout, stderr, code := runRegistry(t, root, up.URL(), "mirror", "--strict", "AdUhTkJm/u8str"); code != 0 {
		t.Fatalf("mirror: exit %d\n%s\n%s", code, stdout, stderr)
	}
	const module, version = "AdUhTkJm/u8str", "0.1.4"
	file := filepath.Join(root, "data", "packages", filepath.FromSlash(module), version+".zip")
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 0xff // same size, one byte off
	if err := os.WriteFile(file, bad, 0o644); err != nil {
		t.Fatal(err)
	}

	stdout, stderr, code := runRegistry(t, root, up.URL(), "verify")
	if code == 0 || !strings.Contains(stdout, "mismatch: "+module+"@"+version+":") ||
		!strings.Contains(stdout, "checked 3 archives, 1 problems") || strings.Contains(stdout, "(purged)") {
		t.Fatalf("verify: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if got, _ := os.ReadFile(file); !bytes.Equal(got, bad) {
		t.Fatal("verify without --purge changed the file")
	}

	stdout, stderr, code = runRegistry(t, root, up.URL(), "verify", "--purge")
	if code == 0 || !strings.Contains(stdout, "mismatch: "+module+"@"+version+":") || !strings.Contains(stdout, "(purged)") {
		t.Fatalf("verify --purge: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("purged archive still there: %v", err)
	}
	want := []string{"AdUhTkJm/u8str@0.1.3", "AdUhTkJm/u8str@0.1.5"}
	if got := mirStored(t, root); !slices.Equal(got, want) {
		t.Fatalf("stored after purge %q, want %q", got, want)
	}
	if stdout, stderr, code := runRegistry(t, root, up.URL(), "verify"); code != 0 || !strings.Contains(stdout, "checked 2 archives, 0 problems") {
		t.Fatalf("verify after purge: exit %d\n%s\n%s", code, stdout, stderr)
	}
	// With patterns, what was selected but is not cached is missing.
	stdout, stderr, code = runRegistry(t, root, up.URL(), "verify", "--strict", module)
	if code == 0 || !strings.Contains(stdout, "missing: "+module+"@"+version+":") {
		t.Fatalf("verify %s: exit %d\nstdout:\n%s\nstderr:\n%s", module, code, stdout, stderr)
	}

	before := up.Count(mirArchivePath(module + "@" + version))
	reg := startRegistry(t, registryOptions{Root: root, UpstreamURL: up.URL()})
	client := newMoonClient(t, reg.URL)
	if err := client.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}
	body, err := client.Download(ctx, module, version)
	if err != nil {
		t.Fatalf("download after purge: %v", err)
	}
	if !bytes.Equal(body, good) {
		t.Fatal("download after purge: other bytes than the original archive")
	}
	if n := up.Count(mirArchivePath(module + "@" + version)); n != before+1 {
		t.Errorf("upstream asked %d times for the purged archive, want once more than %d", n, before)
	}
	reg.Stop(t)
	if got, _ := os.ReadFile(file); !bytes.Equal(got, good) {
		t.Error("the re-fetched archive is not stored with its right bytes")
	}
	if stdout, stderr, code := runRegistry(t, root, up.URL(), "verify"); code != 0 || !strings.Contains(stdout, "checked 3 archives, 0 problems") {
		t.Errorf("verify at the end: exit %d\n%s\n%s", code, stdout, stderr)
	}
}

// TestMirrorIncompleteExitsNonZero: an unresolvable dependency or an
// archive upstream does not have makes mirror exit non-zero, after fetching
// everything it can.
func TestMirrorIncompleteExitsNonZero(t *testing.T) {
	t.Parallel()
	// ryota0624/moonbit_otel@0.0.1 needs moonbitlang/async ^0.15.0 and
	// moonbitlang/protobuf ^0.1.1 (fine) and opentelemetry_proto_mbt
	// {"version": "0.1.0", "path": ...}: only 0.0.x was ever published.
	closure := []string{"moonbitlang/async@0.15.0", "moonbitlang/protobuf@0.1.1", "ryota0624/moonbit_otel@0.0.1"}
	var archives []testupstream.ModuleVersion
	for _, mv := range closure {
		module, version, _ := strings.Cut(mv, "@")
		archives = append(archives, testupstream.ModuleVersion{Module: module, Version: version})
	}
	up := startUpstream(t, testupstream.Options{Archives: archives})

	t.Run("unresolved dependency", func(t *testing.T) {
		root := t.TempDir()
		stdout, stderr, code := runRegistry(t, root, up.URL(), "mirror", "ryota0624/moonbit_otel@0.0.1")
		if code == 0 {
			t.Errorf("exit 0 with an unresolved dependency\n%s", stdout)
		}
		if !strings.Contains(stdout, "1 unresolved dependencies") ||
			!strings.Contains(stdout, `unresolved: ryota0624/opentelemetry_proto_mbt: no published version satisfies "0.1.0" (required by ryota0624/moonbit_otel@0.0.1)`) {
			t.Errorf("the unresolved dependency is not reported:\n%s", stdout)
		}
		if !strings.Contains(stderr, "1 dependencies unresolved") {
			t.Errorf("stderr does not say why it failed:\n%s", stderr)
		}
		mirCheckSummary(t, stdout, 3, 0, 3, 0)
		if got := mirStored(t, root); !slices.Equal(got, closure) {
			t.Errorf("stored %q, want %q", got, closure)
		}
		// A dry run names it too.
		stdout, _, _ = runRegistry(t, t.TempDir(), up.URL(), "mirror", "--dry-run", "ryota0624/moonbit_otel@0.0.1")
		if !strings.Contains(stdout, "unresolved: ryota0624/opentelemetry_proto_mbt") {
			t.Errorf("--dry-run does not name the unresolved dependency:\n%s", stdout)
		}
	})
	t.Run("archive missing upstream", func(t *testing.T) {
		root := t.TempDir()
		stdout, stderr, code := runRegistry(t, root, up.URL(), "mirror", "--strict", "moonbitlang/lex/runtime", "moonbitlang/protobuf@0.1.1")
		if code == 0 {
			t.Errorf("exit 0 with archives missing upstream\n%s", stdout)
		}
		mirCheckSummary(t, stdout, 3, 0, 1, 2)
		for _, mv := range []string{"moonbitlang/lex/runtime@0.1.0", "moonbitlang/lex/runtime@0.1.1"} {
			if !strings.Contains(stdout, "failed: "+mv+": ") {
				t.Errorf("%s not reported as failed:\n%s", mv, stdout)
			}
		}
		if !strings.Contains(stderr, "2 archives failed") {
			t.Errorf("stderr does not say why it failed:\n%s", stderr)
		}
		if got := mirStored(t, root); !slices.Equal(got, []string{"moonbitlang/protobuf@0.1.1"}) {
			t.Errorf("stored %q", got)
		}
	})
}

// TestMirrorRefusesBadInvocations: patterns that match nothing, bad
// patterns and missing input fail before anything is fetched.
func TestMirrorRefusesBadInvocations(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{
		testupstream.EveryVersion("moonbitlang/x"),
	}})
	project := filepath.Join(t.TempDir(), "moon.mod.json")
	if err := os.WriteFile(project, []byte(`{"deps": {"moonbitlang/x": "0.4.6"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		args      []string
		usage     bool   // a usage error: exit 2
		stderrHas string // the message
		noIndex   bool   // refused before the index is even synced
	}{
		{name: "pattern matches nothing", args: []string{"nobody/nothing"}, stderrHas: `"nobody/nothing"`},
		{name: "one pattern of several matches nothing", args: []string{"--strict", "moonbitlang/x", "nobody/nothing"}, stderrHas: `"nobody/nothing"`},
		{name: "version that does not exist", args: []string{"moonbitlang/x@9.9.9"}, stderrHas: `"moonbitlang/x@9.9.9"`},
		{name: "no patterns and no config", args: nil, usage: true, stderrHas: "nothing to mirror", noIndex: true},
		{name: "star without --all", args: []string{"*"}, usage: true, stderrHas: "--all"},
		{name: "not a pattern", args: []string{"moonbitlang"}, usage: true, stderrHas: `"moonbitlang"`},
		{name: "--from and patterns", args: []string{"--from", project, "moonbitlang/x"}, usage: true, stderrHas: "either --from or patterns", noIndex: true},
		{name: "--from a missing file", args: []string{"--from", project + ".missing"}, usage: true, stderrHas: "moon.mod.json.missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up.ResetCounts()
			root := t.TempDir()
			stdout, stderr, code := runRegistry(t, root, up.URL(), append([]string{"mirror"}, tt.args...)...)
			if code == 0 || (tt.usage && code != 2) {
				t.Errorf("exit %d, want non-zero (2 for a usage error: %v)", code, tt.usage)
			}
			if !strings.Contains(stderr, tt.stderrHas) {
				t.Errorf("stderr does not contain %q:\n%s", tt.stderrHas, stderr)
			}
			if got := mirArchiveRequests(up); len(got) != 0 {
				t.Errorf("asked upstream for archives: %v", got)
			}
			if got := mirStored(t, root); len(got) != 0 {
				t.Errorf("stored %q", got)
			}
			if tt.noIndex && len(up.Counts()) != 0 {
				t.Errorf("contacted upstream: %v", up.Counts())
			}
			if strings.Contains(stdout, "selected") {
				t.Errorf("printed a mirror summary:\n%s", stdout)
			}
		})
	}
}

// TestUpdateWriteConfigThenReset: update --write-config followed by
// update --reset leaves $MOON_HOME/config.json exactly as it was; a
// malformed config.json is never replaced without --force.
func TestUpdateWriteConfigThenReset(t *testing.T) {
	t.Parallel()
	const base1, base2 = "http://127.0.0.1:9001", "http://127.0.0.1:9002"
	tests := []struct {
		name    string
		initial *string // nil: no config.json before
		mode    fs.FileMode
		bases   []string // one --write-config per base URL
	}{
		{name: "no file before", bases: []string{base1}},
		{name: "file before", initial: mirPtr(`{"registry": "https://mooncakes.io", "extra": [1, 2]}` + "\n"), mode: 0o600, bases: []string{base1}},
		{name: "file before, written twice", initial: mirPtr(`{"index": "https://example.invalid/git/index"}`), mode: 0o644, bases: []string{base1, base2}},
		{name: "no file before, written twice", bases: []string{base1, base2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			home := t.TempDir()
			path := filepath.Join(home, "config.json")
			if tt.initial != nil {
				if err := os.WriteFile(path, []byte(*tt.initial), tt.mode); err != nil {
					t.Fatal(err)
				}
			}
			for _, base := range tt.bases {
				stdout, stderr, code := mirUpdate(t, home, "update", "--write-config", "--base-url", base)
				if code != 0 {
					t.Fatalf("update --write-config: exit %d\n%s\n%s", code, stdout, stderr)
				}
				for _, line := range []string{"export MOONCAKES_REGISTRY=" + base, "wrote " + path, "moon is not on PATH"} {
					if !strings.Contains(stdout, line) {
						t.Errorf("stdout lacks %q:\n%s", line, stdout)
					}
				}
				var got map[string]string
				data, err := os.ReadFile(path)
				if err != nil || json.Unmarshal(data, &got) != nil {
					t.Fatalf("config.json after --write-config: %v\n%s", err, data)
				}
				want := map[string]string{"registry": base, "index": base + "/git/index", "symbols": base + "/symbols.zip"}
				if !mirSameStrings(got, want) {
					t.Errorf("config.json = %v, want %v", got, want)
				}
			}
			stdout, stderr, code := mirUpdate(t, home, "update", "--reset")
			if code != 0 {
				t.Fatalf("update --reset: exit %d\n%s\n%s", code, stdout, stderr)
			}
			data, err := os.ReadFile(path)
			switch {
			case tt.initial == nil && !os.IsNotExist(err):
				t.Errorf("config.json after reset: %v %q, want none as before", err, data)
			case tt.initial != nil && (err != nil || string(data) != *tt.initial):
				t.Errorf("config.json after reset = %q (%v), want %q", data, err, *tt.initial)
			case tt.initial != nil:
				if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != tt.mode {
					t.Errorf("config.json mode after reset: %v %v, want %v", fi.Mode().Perm(), err, tt.mode)
				}
			}
			if others := mirDirEntries(t, home); !slices.Equal(others, mirExpectEntries(tt.initial != nil)) {
				t.Errorf("MOON_HOME holds %q after reset", others)
			}
		})
	}

	t.Run("malformed config is refused", func(t *testing.T) {
		home := t.TempDir()
		path := filepath.Join(home, "config.json")
		const malformed = `{"registry": "https://mooncakes.io",` // cut short
		if err := os.WriteFile(path, []byte(malformed), 0o644); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, code := mirUpdate(t, home, "update", "--write-config", "--base-url", base1)
		if code == 0 || !strings.Contains(stderr, "--force") {
			t.Errorf("update --write-config over a malformed file: exit %d\n%s\n%s", code, stdout, stderr)
		}
		if data, _ := os.ReadFile(path); string(data) != malformed {
			t.Errorf("malformed config.json changed to %q", data)
		}
		if got := mirDirEntries(t, home); !slices.Equal(got, []string{"config.json"}) {
			t.Errorf("MOON_HOME holds %q", got)
		}
	})

	t.Run("reset with nothing to restore", func(t *testing.T) {
		home := t.TempDir()
		stdout, stderr, code := mirUpdate(t, home, "update", "--reset")
		if code == 0 {
			t.Errorf("update --reset without a backup: exit 0\n%s\n%s", stdout, stderr)
		}
		if got := mirDirEntries(t, home); len(got) != 0 {
			t.Errorf("MOON_HOME holds %q", got)
		}
	})
}

func mirPtr[T any](v T) *T { return &v }

func mirSameStrings(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func mirExpectEntries(hadFile bool) []string {
	if hadFile {
		return []string{"config.json"}
	}
	return nil
}

// mirDirEntries lists a directory's entry names, sorted.
func mirDirEntries(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// mirUpdate runs the binary with MOON_HOME at home and a PATH without moon
// (runRegistry cannot set the environment).
func mirUpdate(t testing.TB, home string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runWithMoonHome(t, home, t.TempDir(), args...)
}

// runWithMoonHome runs the registry with MOON_HOME=home and PATH=pathDir
// alone (no moon unless the test put one there), outside any registry
// settings of the environment.
func runWithMoonHome(t testing.TB, home, pathDir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, registryBin, append([]string{"--dir", t.TempDir(), "--log-format", "json"}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") && !strings.HasPrefix(kv, "MOON_HOME=") && !strings.HasPrefix(kv, "MOONBIT_REGISTRY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// A race-enabled binary otherwise sleeps 1s at exit.
	cmd.Env = append(cmd.Env, "MOON_HOME="+home, "PATH="+pathDir, "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	return runCommand(t, cmd)
}

// mirResolve resolves a project's registry dependencies from a client's
// cloned index as the mirror is meant to: each requirement (a Cargo caret
// requirement; a bare version means ^version) takes the lowest published
// release satisfying it, recursively. It returns sorted "module@version".
func mirResolve(t testing.TB, c *moonClient, deps map[string]string) []string {
	t.Helper()
	type req struct{ module, req string }
	var queue []req
	for m, r := range deps {
		queue = append(queue, req{m, r})
	}
	chosen := map[string]bool{}
	for len(queue) > 0 {
		r := queue[0]
		queue = queue[1:]
		versions, err := c.Versions(r.module)
		if err != nil {
			t.Fatalf("versions of %s in the client's index: %v", r.module, err)
		}
		best := ""
		for _, v := range versions {
			if mirCaret(r.req, v) && (best == "" || mirLess(v, best)) {
				best = v
			}
		}
		if best == "" {
			t.Fatalf("no version of %s satisfies %q in the client's index", r.module, r.req)
		}
		key := r.module + "@" + best
		if chosen[key] {
			continue
		}
		chosen[key] = true
		for m, d := range mirIndexDeps(t, c, r.module, best) {
			queue = append(queue, req{m, d})
		}
	}
	var out []string
	for k := range chosen {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// mirIndexDeps reads the registry dependencies of module@version from the
// client's cloned index (the last line for the version wins).
func mirIndexDeps(t testing.TB, c *moonClient, module, version string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(c.indexDir, "user", filepath.FromSlash(module)+".index"))
	if err != nil {
		t.Fatal(err)
	}
	var deps map[string]string
	for _, l := range bytes.Split(data, []byte("\n")) {
		var line struct {
			Version string                     `json:"version"`
			Deps    map[string]json.RawMessage `json:"deps"`
		}
		if json.Unmarshal(l, &line) != nil || line.Version != version {
			continue
		}
		deps = map[string]string{}
		for name, raw := range line.Deps {
			var s string
			var obj struct {
				Version string `json:"version"`
			}
			switch {
			case json.Unmarshal(raw, &s) == nil:
				deps[name] = s
			case json.Unmarshal(raw, &obj) == nil && obj.Version != "":
				deps[name] = obj.Version
			}
		}
	}
	return deps
}

// mirNums parses the numbers of a release version or a requirement
// ("1", "1.2", "1.2.3"); ok is false for prereleases and anything else.
func mirNums(s string) ([]int, bool) {
	var out []int
	for _, f := range strings.Split(s, ".") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return nil, false
		}
		out = append(out, n)
	}
	return out, len(out) >= 1 && len(out) <= 3
}

// mirCaret is Cargo's caret rule for release versions: v >= req, and v
// keeps req's numbers up to and including the first non-zero one.
func mirCaret(req, v string) bool {
	r, ok := mirNums(strings.TrimPrefix(req, "^"))
	n, vok := mirNums(v)
	if !ok || !vok || len(n) != 3 {
		return false
	}
	fixed := len(r)
	for i, x := range r {
		if x != 0 {
			fixed = i + 1
			break
		}
	}
	for i := 0; i < fixed; i++ {
		if n[i] != r[i] {
			return false
		}
	}
	for i := range r {
		if n[i] != r[i] {
			return n[i] > r[i]
		}
	}
	return true
}

func mirLess(a, b string) bool {
	x, _ := mirNums(a)
	y, _ := mirNums(b)
	return slices.Compare(x, y) < 0
}
