package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"moonbit-registry/internal/testsupport"
	"moonbit-registry/internal/testupstream"
)

// privateRoot lays out a registry root whose registry.toml reserves the
// owner "acme" and accepts one publish token, which it returns.
func privateRoot(t *testing.T) (root, token string) {
	t.Helper()
	root = t.TempDir()
	token = "publish-token-for-tests-0123456789"
	digest := sha256.Sum256([]byte(token))
	toml := `[private]
owners = ["acme"]

[server]
publish_tokens = ["` + hex.EncodeToString(digest[:]) + `"]

[index]
# Every clone or pull looks at upstream first: the test publishes upstream
# and pulls right after.
check_interval = "1ms"
`
	if err := os.WriteFile(filepath.Join(root, "registry.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	return root, token
}

// privateArchive writes a zip as moon package makes it and returns its path.
func privateArchive(t *testing.T, module, version string, deps map[string]string) string {
	t.Helper()
	var raw json.RawMessage
	if deps != nil {
		b, err := json.Marshal(deps)
		if err != nil {
			t.Fatal(err)
		}
		raw = b
	}
	data, err := testupstream.BuildArchive(module, version, raw, 0)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), strings.ReplaceAll(module, "/", "-")+"-"+version+".zip")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// runWithToken runs the registry binary with MOONBIT_REGISTRY_TOKEN set.
func runWithToken(t *testing.T, root, token string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, registryBin, append([]string{"--dir", root, "--log-format", "json"}, args...)...)
	cmd.Env = append(os.Environ(), noRaceExitSleep, "MOONBIT_REGISTRY_TOKEN="+token)
	return runCommand(t, cmd)
}

// servedCommit is the commit a registry advertises for main.
func servedCommit(t *testing.T, c *moonClient, ctx context.Context) string {
	t.Helper()
	out, err := c.git(ctx, "ls-remote", c.index, "refs/heads/main")
	if err != nil {
		t.Fatal(err)
	}
	id, _, _ := strings.Cut(out, "\t")
	return strings.TrimSpace(id)
}

func TestPrivateModules(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// A small index: one real module (never fetched here), then what the
	// test publishes.
	real, err := testupstream.DefaultIndexSource()
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	line, err := os.ReadFile(filepath.Join(real, "user", "yj-qin", "regexp.index"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(src, "user", "yj-qin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "user", "yj-qin", "regexp.index"), line, 0o644); err != nil {
		t.Fatal(err)
	}
	up := startUpstream(t, testupstream.Options{IndexSource: src})
	if err := up.Index.AddVersion(ctx, "pubowner/util", "1.0.0", nil); err != nil {
		t.Fatal(err)
	}
	// A public module named like the internal one: dependency confusion.
	for _, mod := range []string{"acme/lib", "acme/tool"} {
		if err := up.Index.AddVersion(ctx, mod, "9.9.9", nil); err != nil {
			t.Fatal(err)
		}
	}
	root, token := privateRoot(t)
	reg := startRegistry(t, registryOptions{Root: root, UpstreamURL: up.URL()})

	lib := privateArchive(t, "acme/lib", "1.0.0", map[string]string{"pubowner/util": "1.0.0"})
	out, errOut, code := runWithToken(t, root, token, "publish", "--server", reg.URL, lib)
	if code != 0 || !strings.Contains(out, "published acme/lib@1.0.0") {
		t.Fatalf("publish: exit %d\n%s%s", code, out, errOut)
	}

	// Refusals change nothing and say why.
	for _, tc := range []struct {
		name, token, archive, want string
	}{
		{"wrong token", "not-the-token", lib, "may not publish"},
		{"owner not reserved", token, privateArchive(t, "pubowner/other", "1.0.0", nil), "[private] owners"},
		{"other bytes, same version", token, privateArchive(t, "acme/lib", "1.0.0", map[string]string{"pubowner/util": "^1.0.0"}), "already published"},
		{"not a zip", token, writeTemp(t, "not a zip"), "not a zip"},
		{"dependency that resolves nowhere", token, privateArchive(t, "acme/lib", "1.0.1", map[string]string{"nonexist/zzz": "1.0.0"}), `dependency "nonexist/zzz"`},
	} {
		out, errOut, code := runWithToken(t, root, tc.token, "publish", "--server", reg.URL, tc.archive)
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, want 1 with %q\n%s%s", tc.name, code, tc.want, out, errOut)
		}
	}
	if out, errOut, code := runWithToken(t, root, token, "publish", "--server", reg.URL, lib); code != 0 || !strings.Contains(out, "nothing changed") {
		t.Errorf("identical re-publish: exit %d\n%s%s", code, out, errOut)
	}

	// A moon-like client sees one registry: private and public modules,
	// and not upstream's acme/lib.
	client := newMoonClient(t, reg.URL)
	if err := client.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if vs, err := client.Versions("acme/lib"); err != nil || !slices.Equal(vs, []string{"1.0.0"}) {
		t.Fatalf("acme/lib versions in the served index: %v, %v; want only the private 1.0.0", vs, err)
	}
	if _, err := client.Versions("acme/tool"); !os.IsNotExist(err) {
		t.Fatalf("upstream's acme/tool is served (%v)", err)
	}
	build := mirResolve(t, client, map[string]string{"acme/lib": "1.0.0"})
	if !slices.Equal(build, []string{"acme/lib@1.0.0", "pubowner/util@1.0.0"}) {
		t.Fatalf("build list = %v", build)
	}
	downloadAll := func(c *moonClient, list []string) {
		t.Helper()
		for _, s := range list {
			mod, v, _ := strings.Cut(s, "@")
			if _, err := c.Download(ctx, mod, v); err != nil {
				t.Fatalf("download %s: %v", s, err)
			}
		}
	}
	downloadAll(client, build)
	if _, err := client.get(ctx, client.archiveURL("acme/tool", "9.9.9")); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("upstream's acme/tool archive through the registry: %v, want 404", err)
	}
	if n := up.Count("/user/acme/lib/9.9.9.zip") + up.Count("/user/acme/lib/1.0.0.zip") + up.Count("/user/acme/tool/9.9.9.zip"); n != 0 {
		t.Errorf("upstream was asked for acme/lib %d times", n)
	}

	// Upstream and the team keep publishing; every pull fast-forwards.
	for round, step := range []func() error{
		func() error { return up.Index.AddVersion(ctx, "pubowner/util", "1.1.0", nil) },
		func() error {
			// A local publish into the root while the server runs.
			p := privateArchive(t, "acme/lib", "1.1.0", map[string]string{"pubowner/util": "1.1.0"})
			if out, errOut, code := runWithToken(t, root, "", "publish", p); code != 0 {
				t.Fatalf("local publish: exit %d\n%s%s", code, out, errOut)
			}
			return up.Index.AddVersion(ctx, "acme/lib", "9.9.10", nil)
		},
		func() error {
			_, errOut, code := runWithToken(t, root, token, "deprecate", "--server", reg.URL, "--reason", "use 1.1.0", "acme/lib@1.0.0")
			if code != 0 {
				t.Fatalf("deprecate: exit %d\n%s", code, errOut)
			}
			return up.Index.AddVersion(ctx, "pubowner/util", "1.2.0", nil)
		},
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
		// pull pulls and checks the pull fast-forwarded; it returns the
		// commit the client is at.
		pull := func(which string) string {
			before, _ := client.git(ctx, "-C", client.indexDir, "rev-parse", "HEAD")
			if err := client.PullIndex(ctx); err != nil {
				t.Fatalf("round %d: %s pull: %v", round, which, err)
			}
			after, _ := client.git(ctx, "-C", client.indexDir, "rev-parse", "HEAD")
			if _, err := client.git(ctx, "-C", client.indexDir, "merge-base", "--is-ancestor", strings.TrimSpace(before), strings.TrimSpace(after)); err != nil {
				t.Fatalf("round %d: the %s pull did not fast-forward: %v", round, which, err)
			}
			return strings.TrimSpace(after)
		}
		at := pull("first")
		if got := servedCommit(t, client, ctx); got != at {
			// The sync the pull started may outlast the few seconds a
			// request waits for it (a loaded machine): the next pull
			// brings what it served, and still fast-forwards.
			at = pull("second")
			if got := servedCommit(t, client, ctx); got != at {
				t.Fatalf("round %d: client at %s after two pulls, registry serves %s", round, at, got)
			}
		}
	}
	if vs, _ := client.Versions("acme/lib"); !slices.Equal(vs, []string{"1.0.0", "1.1.0"}) {
		t.Errorf("acme/lib versions after the rounds: %v", vs)
	}
	if vs, _ := client.Versions("pubowner/util"); !slices.Equal(vs, []string{"1.0.0", "1.1.0", "1.2.0"}) {
		t.Errorf("pubowner/util versions after the rounds: %v", vs)
	}
	if data, err := os.ReadFile(filepath.Join(client.indexDir, "user", "acme", "lib.index")); err != nil || !strings.Contains(string(data), `"deprecated":"use 1.1.0"`) {
		t.Errorf("deprecation not in the served index: %v\n%s", err, data)
	}

	// Search and metadata show the private module, never upstream's
	// namesake.
	found, _, err := client.Search(ctx, "acme", 20)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range found {
		names = append(names, r.Name+"@"+r.Version)
	}
	if !slices.Contains(names, "acme/lib@1.1.0") || slices.Contains(names, "acme/tool@9.9.9") {
		t.Errorf("search acme = %v, want the private acme/lib and not upstream's acme/tool", names)
	}
	meta, err := client.get(ctx, reg.URL+"/api/v0/modules/acme/lib")
	if err != nil || strings.Contains(string(meta), "9.9.") || !strings.Contains(string(meta), "1.1.0") {
		t.Errorf("metadata of acme/lib: %v\n%s", err, meta)
	}
	// moon view of a private module, latest and the deprecated release.
	checkView(t, client, reg.URL+"/api/v0/manifest/acme/lib", "acme/lib", "1.1.0", "")
	checkView(t, client, reg.URL+"/api/v0/manifest/acme/lib@1.0.0", "acme/lib", "1.0.0", "use 1.1.0")

	// mirror --from resolves across private and public modules and
	// pre-warms what a project needs.
	project := filepath.Join(t.TempDir(), "moon.mod.json")
	if err := os.WriteFile(project, []byte(`{"name": "acme/app", "deps": {"acme/lib": "1.1.0"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := runRegistry(t, root, up.URL(), "mirror", "--no-symbols", "--from", project); code != 0 || !strings.Contains(out+errOut, "pubowner/util@1.1.0") || !strings.Contains(out+errOut, "fetched 1 (") {
		t.Fatalf("mirror --from: exit %d\n%s%s", code, out, errOut)
	}

	// With upstream gone, a new client still gets the whole build list.
	if err := up.Down(); err != nil {
		t.Fatal(err)
	}
	offline := newMoonClient(t, reg.URL)
	if err := offline.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}
	build = mirResolve(t, offline, map[string]string{"acme/lib": "1.1.0"})
	if !slices.Equal(build, []string{"acme/lib@1.1.0", "pubowner/util@1.1.0"}) {
		t.Fatalf("build list with upstream down = %v", build)
	}
	downloadAll(offline, build) // pubowner/util@1.1.0 thanks to mirror
	downloadAll(offline, []string{"acme/lib@1.0.0", "pubowner/util@1.0.0"})
	// A publish with upstream down is served at once.
	p := privateArchive(t, "acme/lib", "1.2.0", nil)
	if out, errOut, code := runWithToken(t, root, token, "publish", "--server", reg.URL, p); code != 0 {
		t.Fatalf("publish with upstream down: exit %d\n%s%s", code, out, errOut)
	}
	if err := offline.PullIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := offline.Download(ctx, "acme/lib", "1.2.0"); err != nil {
		t.Fatalf("new private version with upstream down: %v", err)
	}
}

// writeTemp writes data to a new file and returns its path.
func writeTemp(t *testing.T, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFleetPrivateModules: with the S3 store, private modules live in the
// bucket: a publish on one replica is served by the others, and clients
// of either replica fast-forward through publishes on both.
func TestFleetPrivateModules(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	srv := testsupport.StartS3(t, s3Bucket)
	s3Env(t, srv, "private-fleet/")
	up := startUpstream(t, testupstream.Options{})
	if err := up.Index.AddVersion(ctx, "pubowner/util", "1.0.0", nil); err != nil {
		t.Fatal(err)
	}
	token := "fleet-publish-token-0123456789abcdef"
	digest := sha256.Sum256([]byte(token))
	env := []string{"MOONBIT_REGISTRY_PRIVATE_OWNERS=acme", "MOONBIT_REGISTRY_SERVER_PUBLISH_TOKENS=" + hex.EncodeToString(digest[:])}
	a := startRegistry(t, registryOptions{UpstreamURL: up.URL(), Env: env})
	b := startRegistry(t, registryOptions{UpstreamURL: up.URL(), Env: env})

	publish := func(on *registry, module, version string, deps map[string]string) {
		t.Helper()
		p := privateArchive(t, module, version, deps)
		if out, errOut, code := runWithToken(t, on.Root, token, "publish", "--server", on.URL, p); code != 0 {
			t.Fatalf("publish %s@%s on %s: exit %d\n%s%s", module, version, on.URL, code, out, errOut)
		}
	}
	publish(a, "acme/lib", "1.0.0", map[string]string{"pubowner/util": "1.0.0"})
	cb := newMoonClient(t, b.URL)
	if err := cb.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}
	build := mirResolve(t, cb, map[string]string{"acme/lib": "1.0.0"})
	if !slices.Equal(build, []string{"acme/lib@1.0.0", "pubowner/util@1.0.0"}) {
		t.Fatalf("build list from the other replica = %v", build)
	}
	if _, err := cb.Download(ctx, "acme/lib", "1.0.0"); err != nil {
		t.Fatalf("the private archive from the other replica: %v", err)
	}

	ca := newMoonClient(t, a.URL)
	if err := ca.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}
	publish(b, "acme/lib", "1.1.0", nil)
	for _, c := range []*moonClient{ca, cb} {
		before, _ := c.git(ctx, "-C", c.indexDir, "rev-parse", "HEAD")
		if err := c.PullIndex(ctx); err != nil {
			t.Fatalf("pull from %s: %v", c.index, err)
		}
		after, _ := c.git(ctx, "-C", c.indexDir, "rev-parse", "HEAD")
		if _, err := c.git(ctx, "-C", c.indexDir, "merge-base", "--is-ancestor", strings.TrimSpace(before), strings.TrimSpace(after)); err != nil {
			t.Fatalf("the pull from %s did not fast-forward: %v", c.index, err)
		}
		if vs, _ := c.Versions("acme/lib"); !slices.Equal(vs, []string{"1.0.0", "1.1.0"}) {
			t.Errorf("%s serves acme/lib %v", c.index, vs)
		}
	}
	if sa, sb := servedCommit(t, ca, ctx), servedCommit(t, cb, ctx); sa != sb {
		t.Errorf("the replicas serve %s and %s", sa, sb)
	}
	if _, err := ca.Download(ctx, "acme/lib", "1.1.0"); err != nil {
		t.Fatalf("a version published on the other replica: %v", err)
	}
}

// requestsTo counts the requests a registry's access log shows whose path
// starts with prefix.
func requestsTo(r *registry, prefix string) int {
	n := 0
	for _, line := range strings.Split(r.Logs(), "\n") {
		var rec struct {
			Path string `json:"path"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && strings.HasPrefix(rec.Path, prefix) {
			n++
		}
	}
	return n
}

// TestTwoSources: one proxy with two sources, the test upstream for
// everything and a second moonbit-registry (a company's central mirror,
// itself serving the private owner "corp", behind a token) for "corp".
// Each owner's index lines and archives come from its own source.
func TestTwoSources(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	up := startUpstream(t, testupstream.Options{})
	for _, mod := range []string{"pubowner/util", "corp/evil"} {
		if err := up.Index.AddVersion(ctx, mod, "1.0.0", nil); err != nil {
			t.Fatal(err)
		}
	}

	// The central registry: reading needs a token, corp is its own.
	readToken, publishToken := "central-read-token-0123456789", "central-publish-token-0123456789"
	digest := func(s string) string { d := sha256.Sum256([]byte(s)); return hex.EncodeToString(d[:]) }
	central := startRegistry(t, registryOptions{UpstreamURL: up.URL(), NoWaitReady: true, Env: []string{
		"MOONBIT_REGISTRY_PRIVATE_OWNERS=corp",
		"MOONBIT_REGISTRY_SERVER_AUTH_TOKENS=" + digest(readToken),
		"MOONBIT_REGISTRY_SERVER_PUBLISH_TOKENS=" + digest(publishToken),
	}})
	waitReadyWith(t, central, http.DefaultClient, central.URL, "Bearer "+readToken)
	lib := privateArchive(t, "corp/lib", "1.0.0", map[string]string{"pubowner/util": "1.0.0"})
	if out, errOut, code := runWithToken(t, central.Root, publishToken, "publish", "--server", central.URL, lib); code != 0 {
		t.Fatalf("publish to central: exit %d\n%s%s", code, out, errOut)
	}

	root := t.TempDir()
	toml := `[index]
check_interval = "1ms"

[[sources]]
name = "central"
index_url = "` + central.URL + `/git/index"
download_url = "` + central.URL + `"
owners = ["corp"]
token_env = "CENTRAL_TOKEN"
`
	if err := os.WriteFile(filepath.Join(root, "registry.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	proxy := startRegistry(t, registryOptions{Root: root, UpstreamURL: up.URL(), Env: []string{"CENTRAL_TOKEN=" + readToken}})

	c := newMoonClient(t, proxy.URL)
	if err := c.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Versions("corp/evil"); !os.IsNotExist(err) {
		t.Errorf("upstream's corp/evil is served (%v); corp comes from central", err)
	}
	build := mirResolve(t, c, map[string]string{"corp/lib": "1.0.0"})
	if !slices.Equal(build, []string{"corp/lib@1.0.0", "pubowner/util@1.0.0"}) {
		t.Fatalf("build list = %v", build)
	}
	up.ResetCounts()
	centralBefore := requestsTo(central, "/user/")
	for _, s := range build {
		mod, v, _ := strings.Cut(s, "@")
		if _, err := c.Download(ctx, mod, v); err != nil {
			t.Fatalf("download %s: %v", s, err)
		}
	}
	if n := up.Count("/user/pubowner/util/1.0.0.zip"); n != 1 {
		t.Errorf("upstream served pubowner/util %d times, want 1", n)
	}
	if n := up.Count("/user/corp/lib/1.0.0.zip"); n != 0 {
		t.Errorf("upstream was asked for corp/lib %d times", n)
	}
	// The access log is written at least every second.
	deadline := time.Now().Add(5 * time.Second)
	for requestsTo(central, "/user/")-centralBefore < 1 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := requestsTo(central, "/user/") - centralBefore; n != 1 {
		t.Errorf("central served %d archive requests, want 1 (corp/lib only)", n)
	}
	if n := requestsTo(central, "/user/pubowner"); n != 0 {
		t.Errorf("central was asked for pubowner's archives %d times", n)
	}

	// Central publishes again: the proxy's clients pull it.
	lib2 := privateArchive(t, "corp/lib", "1.1.0", nil)
	if out, errOut, code := runWithToken(t, central.Root, publishToken, "publish", "--server", central.URL, lib2); code != 0 {
		t.Fatalf("second publish to central: exit %d\n%s%s", code, out, errOut)
	}
	// The pull makes the proxy look at every source's tip first.
	if err := c.PullIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if vs, _ := c.Versions("corp/lib"); !slices.Equal(vs, []string{"1.0.0", "1.1.0"}) {
		t.Errorf("corp/lib through the proxy after central's publish: %v", vs)
	}
	if _, err := c.Download(ctx, "corp/lib", "1.1.0"); err != nil {
		t.Fatal(err)
	}
}
