package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"moonbit-registry/internal/testsupport"
	"moonbit-registry/internal/testupstream"
)

// The fault suite: upstream hanging or gone, a full disk, SIGTERM under
// load and a flood of hostile paths. Each test checks that nothing corrupt
// is stored or served and that the process keeps serving. Faults already
// covered by archive_test.go and crash_test.go (wrong bytes, resets,
// truncation, 503s, 404, a short list of hostile paths, offline, SIGKILL
// mid-download) are not repeated here.

// TestFaultUpstreamHang: upstream accepts archive requests and never
// answers. The archive request ends with a gateway error once every attempt
// has timed out, while cached archives, health checks and index clones are
// served alongside it; nothing is stored, and once upstream answers again
// the archive downloads.
func TestFaultUpstreamHang(t *testing.T) {
	ctx := context.Background()
	const cachedV, hungV = "0.4.6", "0.4.7"
	// Two attempts of 3s plus a backoff of at most 0.5s: long enough for
	// the other requests below to be served while the fetch hangs.
	const attemptTimeout, retries = 3 * time.Second, 1
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{
		{Module: arcModX, Version: cachedV}, {Module: arcModX, Version: hungV},
	}})
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL(), Env: []string{
		"MOONBIT_REGISTRY_UPSTREAM_TIMEOUT=" + attemptTimeout.String(),
		"MOONBIT_REGISTRY_UPSTREAM_RETRIES=" + strconv.Itoa(retries),
	}})
	client := newMoonClient(t, reg.URL)
	if err := client.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Download(ctx, arcModX, cachedV); err != nil {
		t.Fatal(err)
	}

	up.Faults.Hang(testupstream.OnPrefix(testupstream.PrefixArchives))
	hungPath := arcUpstreamPath(arcModX, hungV)
	hung := make(chan fltResult, 1)
	go func() {
		hung <- fltGet(&http.Client{Timeout: time.Minute}, arcOneSegmentURL(reg.URL, arcModX, hungV))
	}()
	fltWaitCount(t, up, hungPath, 1, 20*time.Second)

	others := []struct {
		name string
		run  func() error
	}{
		{"cached archive", func() error { _, err := client.Download(ctx, arcModX, cachedV); return err }},
		{"/healthz", func() error { return fltExpect(reg.URL+"/healthz", http.StatusOK) }},
		{"/readyz", func() error { return fltExpect(reg.URL+"/readyz", http.StatusOK) }},
		{"index clone", func() error { return newMoonClient(t, reg.URL).CloneIndex(ctx) }},
	}
	for _, o := range others {
		if err := o.run(); err != nil {
			t.Errorf("%s while an archive fetch hangs: %v", o.name, err)
		}
		select {
		case r := <-hung:
			t.Fatalf("the hung archive request ended (status %d after %v) before %s was served: "+
				"other requests were not served alongside the hung fetch", r.status, r.elapsed, o.name)
		default:
		}
	}

	var res fltResult
	select {
	case res = <-hung:
	case <-time.After(30 * time.Second):
		t.Fatal("archive request still pending 30s after upstream started hanging")
	}
	if res.err != nil {
		t.Fatalf("hung archive request: %v", res.err)
	}
	if res.status != http.StatusGatewayTimeout && res.status != http.StatusBadGateway {
		t.Errorf("hung archive request: %d (%s), want 504 or 502", res.status, res.body)
	}
	if res.elapsed >= 15*time.Second {
		t.Errorf("hung archive request took %v, want it bounded by the attempt timeout (%v x %d attempts)",
			res.elapsed, attemptTimeout, 1+retries)
	}
	if n := up.Count(hungPath); n != 1+retries {
		t.Errorf("upstream saw %d requests for %s, want %d (1 + %d retries)", n, hungPath, 1+retries, retries)
	}
	if _, err := os.Lstat(arcStorePath(reg.Root, arcModX, hungV)); !os.IsNotExist(err) {
		t.Errorf("a timed-out fetch left something at the archive's path (stat: %v)", err)
	}
	if tmp := arcTempFiles(t, reg.Root); len(tmp) > 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
	// The line is written before the answer but read from a pipe.
	if !fltWaitLog(reg, 10*time.Second, "archive fetch failed", arcModX+"@"+hungV) {
		t.Errorf("no 'archive fetch failed' log line for %s@%s", arcModX, hungV)
	}

	up.Faults.Clear()
	data, err := client.Download(ctx, arcModX, hungV)
	if err != nil {
		t.Fatalf("after upstream answers again: %v", err)
	}
	if stored, err := os.ReadFile(arcStorePath(reg.Root, arcModX, hungV)); err != nil || !bytes.Equal(stored, data) {
		t.Errorf("stored copy after recovery: %d bytes, err %v; want the %d bytes served", len(stored), err, len(data))
	}
}

// TestFaultUpstreamDownThroughout: a root synced and warmed while upstream
// was up is served by a new process that never reaches upstream: the index
// clone and the cached archive work, a miss is 504, a version the index
// lacks is 503 (unknown right now), sync failures are logged, /healthz and
// /readyz stay 200 and nothing is written to the store.
func TestFaultUpstreamDownThroughout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const cachedV, missV = "0.4.6", "0.4.7"
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{
		{Module: arcModX, Version: cachedV}, {Module: arcModX, Version: missV},
	}})
	root, want := fltWarmRoot(t, up, cachedV)

	if err := up.Down(); err != nil {
		t.Fatal(err)
	}
	defer up.Up()
	stores := []string{filepath.Join(root, "data", "packages"), filepath.Join(root, "data", "http-cache")}
	before := map[string]map[string]string{}
	for _, d := range stores {
		before[d] = fltSnapshot(t, d)
	}
	head := fltGitHead(t, filepath.Join(root, "data", "index"))

	// startRegistry waits for /readyz: the mirror from the earlier run is
	// enough to be ready.
	reg := startRegistry(t, registryOptions{Root: root, UpstreamURL: up.URL()})
	// The first sync runs at start and is retried after 1s: two failures.
	if !fltWaitLogCount(reg, "index sync failed", 2, 20*time.Second) {
		t.Errorf("fewer than 2 'index sync failed' log lines within 20s; log:\n%s", reg.Logs())
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if err := fltExpect(reg.URL+p, http.StatusOK); err != nil {
			t.Errorf("upstream down: %v", err)
		}
	}
	client := newMoonClient(t, reg.URL)
	if err := client.CloneIndex(ctx); err != nil {
		t.Fatalf("clone with upstream down: %v", err)
	}
	got, err := client.Download(ctx, arcModX, cachedV)
	if err != nil {
		t.Errorf("cached archive with upstream down: %v", err)
	} else if !bytes.Equal(got, want) {
		t.Errorf("cached archive differs from the one first served")
	}
	miss := fltGet(&http.Client{Timeout: time.Minute}, arcOneSegmentURL(reg.URL, arcModX, missV))
	if miss.err != nil || miss.status != http.StatusGatewayTimeout || !strings.Contains(string(miss.body), "not cached") {
		t.Errorf("miss with upstream down: %d (%s) %v, want 504 saying it is not cached", miss.status, miss.body, miss.err)
	}
	// A version the local index lacks while the index cannot be brought up
	// to date is unknown right now, not missing: 503 with Retry-After (moon
	// retries that, never a 404).
	unknown := arcFetch(t, http.MethodGet, arcOneSegmentURL(reg.URL, arcModX, "9.9.9"), nil)
	if unknown.status != http.StatusServiceUnavailable || unknown.header.Get("Retry-After") == "" ||
		!strings.Contains(string(unknown.body), "not in the local index") {
		t.Errorf("unknown version with the index sync failing: %d, Retry-After %q (%s); want 503 with Retry-After",
			unknown.status, unknown.header.Get("Retry-After"), unknown.body)
	}
	// Where upstream lives is for the log, not for clients.
	upHost := strings.TrimPrefix(up.URL(), "http://")
	for _, body := range [][]byte{miss.body, unknown.body} {
		if strings.Contains(string(body), upHost) {
			t.Errorf("answer %q names the upstream address %s", body, upHost)
		}
	}
	// Still serving after all that.
	if err := fltExpect(reg.URL+"/healthz", http.StatusOK); err != nil {
		t.Error(err)
	}
	reg.Stop(t)

	for _, d := range stores {
		if diff := fltDiff(before[d], fltSnapshot(t, d)); len(diff) > 0 {
			t.Errorf("%s changed with upstream down: %v", d, diff)
		}
	}
	if h := fltGitHead(t, filepath.Join(root, "data", "index")); h != head {
		t.Errorf("index mirror moved from %s to %s with upstream down", head, h)
	}
}

// TestFaultUpstreamHealthFollowsContact: the status (page and JSON)
// follows upstream with the next contact, not the next sync: a failed
// fetch makes it "not reachable" at once, with why, and a fetch that
// works makes it reachable again.
func TestFaultUpstreamHealthFollowsContact(t *testing.T) {
	t.Parallel()
	versions := []string{"0.4.6", "0.4.7", "0.4.8"}
	var archives []testupstream.ModuleVersion
	for _, v := range versions {
		archives = append(archives, testupstream.ModuleVersion{Module: arcModX, Version: v})
	}
	up := startUpstream(t, testupstream.Options{Archives: archives})
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL(), Env: []string{"MOONBIT_REGISTRY_UPSTREAM_RETRIES=0"}})
	type status struct {
		Index struct {
			UpstreamOK      bool      `json:"upstream_ok"`
			UpstreamError   string    `json:"upstream_error"`
			UpstreamChecked time.Time `json:"upstream_checked"`
		}
	}
	step := func(name, version string, wantStatus int, wantOK bool) {
		t.Helper()
		if res := arcFetch(t, http.MethodGet, arcOneSegmentURL(reg.URL, arcModX, version), nil); res.status != wantStatus {
			t.Fatalf("%s: archive %s: %d (%s), want %d", name, version, res.status, res.body, wantStatus)
		}
		var st status
		if err := json.Unmarshal(arcFetch(t, http.MethodGet, reg.URL+"/-/status.json", nil).body, &st); err != nil {
			t.Fatal(err)
		}
		if st.Index.UpstreamOK != wantOK || (st.Index.UpstreamError == "") != wantOK || time.Since(st.Index.UpstreamChecked) > time.Minute {
			t.Errorf("%s: status %+v, want upstream_ok %v", name, st.Index, wantOK)
		}
		page := string(arcFetch(t, http.MethodGet, reg.URL+"/", nil).body)
		if want := map[bool]string{true: ">reachable<", false: ">not reachable<"}[wantOK]; !strings.Contains(page, want) {
			t.Errorf("%s: the status page does not say %q", name, want)
		}
	}
	step("upstream up", versions[0], http.StatusOK, true)
	if err := up.Down(); err != nil {
		t.Fatal(err)
	}
	step("upstream down", versions[1], http.StatusGatewayTimeout, false)
	if err := up.Up(); err != nil {
		t.Fatal(err)
	}
	step("upstream back", versions[2], http.StatusOK, true)
}

// TestFaultReadOnlyOffline: serve --offline on a data directory that is
// read-only (a copy shipped on read-only media, a read-only volume) serves
// what is there: ready, the index clones, cached archives download, a miss
// is 504, and start-up writes nothing. The directory is made read-only with
// a read-only bind mount (needs mount privileges; skipped without them).
func TestFaultReadOnlyOffline(t *testing.T) {
	ctx := context.Background()
	const cachedV, missV = "0.4.6", "0.4.7"
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{
		{Module: arcModX, Version: cachedV}, {Module: arcModX, Version: missV},
	}})
	root, want := fltWarmRoot(t, up, cachedV)

	data := filepath.Join(root, "data")
	if out, err := exec.Command("mount", "--bind", data, data).CombinedOutput(); err != nil {
		t.Skipf("mount --bind not permitted here: %v: %s", err, bytes.TrimSpace(out))
	}
	// Registered before startRegistry, so it runs after the registry has
	// stopped and before the temp dir is removed.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", data).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", data, err, out)
		}
	})
	if out, err := exec.Command("mount", "-o", "remount,bind,ro", data).CombinedOutput(); err != nil {
		t.Fatalf("remounting %s read-only: %v: %s", data, err, out)
	}
	if err := os.WriteFile(filepath.Join(data, "probe"), nil, 0o644); err == nil {
		t.Fatal("the data directory is still writable")
	}
	before := fltSnapshot(t, data)

	reg := startRegistry(t, registryOptions{Root: root, UpstreamURL: up.URL(), Args: []string{"--offline"}})
	if err := fltExpect(reg.URL+"/readyz", http.StatusOK); err != nil {
		t.Errorf("read-only and offline: %v", err)
	}
	client := newMoonClient(t, reg.URL)
	if err := client.CloneIndex(ctx); err != nil {
		t.Fatalf("clone from a read-only mirror: %v", err)
	}
	if got, err := client.Download(ctx, arcModX, cachedV); err != nil || !bytes.Equal(got, want) {
		t.Errorf("cached archive from a read-only store: %d bytes, %v", len(got), err)
	}
	if miss := fltGet(&http.Client{Timeout: time.Minute}, arcOneSegmentURL(reg.URL, arcModX, missV)); miss.status != http.StatusGatewayTimeout {
		t.Errorf("miss from a read-only store: %d (%s) %v, want 504", miss.status, miss.body, miss.err)
	}
	reg.Stop(t)
	if diff := fltDiff(before, fltSnapshot(t, data)); len(diff) > 0 {
		t.Errorf("the read-only data directory changed: %v", diff)
	}
}

// TestFaultDiskFull: the store's filesystem cannot take the next archive.
// The request fails with a 5xx and the cause in the log, no partial file is
// left (temporary directory included, and with tmpfs no space is held by a
// deleted but open file), cached archives are still served, and once space
// is back the same archive downloads. Two real mechanisms: a small tmpfs
// mounted on the store (needs mount privileges) and a file size limit set
// on the running process with prlimit.
func TestFaultDiskFull(t *testing.T) {
	const size = 768 << 10
	versions := []string{"0.4.6", "0.4.7", "0.4.8"} // two fit, the third does not
	var sel []testupstream.ModuleVersion
	for _, v := range versions {
		sel = append(sel, testupstream.ModuleVersion{Module: arcModX, Version: v})
	}
	up := startUpstream(t, testupstream.Options{Archives: sel, ArchiveSize: size})
	cached, failing := versions[:2], versions[2]

	mechanisms := []struct {
		name string
		// prepare runs before the registry starts on root; a non-empty
		// result is why the mechanism is not available here.
		prepare func(t *testing.T, root string) string
		// fill makes the next store fail; the cached archives are in.
		fill func(t *testing.T, reg *registry)
		// free undoes the fault.
		free func(t *testing.T, reg *registry)
		// errText is the cause the log must name.
		errText string
		// used is the filesystem's used bytes, or -1 if it says nothing.
		used func(t *testing.T, root string) int64
	}{
		{
			name: "tmpfs of 2 MiB",
			prepare: func(t *testing.T, root string) string {
				dir := filepath.Join(root, "data", "packages")
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", dir).CombinedOutput()
				if err != nil {
					return fmt.Sprintf("mount -t tmpfs on %s not permitted here: %v: %s", dir, err, bytes.TrimSpace(out))
				}
				// Registered before startRegistry, so it runs after the
				// registry has stopped and before the temp dir is removed.
				t.Cleanup(func() {
					if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
						t.Errorf("umount %s: %v: %s", dir, err, out)
					}
				})
				return ""
			},
			fill: func(t *testing.T, reg *registry) {
				if free := fltFree(t, filepath.Join(reg.Root, "data", "packages")); free >= size {
					t.Fatalf("tmpfs has %d bytes free after caching %d archives; the next (%d bytes) would fit", free, len(cached), size)
				}
			},
			free: func(t *testing.T, reg *registry) {
				if err := os.Remove(arcStorePath(reg.Root, arcModX, cached[1])); err != nil {
					t.Fatal(err)
				}
			},
			errText: "no space left on device",
			used: func(t *testing.T, root string) int64 {
				dir := filepath.Join(root, "data", "packages")
				var st syscall.Statfs_t
				if err := syscall.Statfs(dir, &st); err != nil {
					t.Fatal(err)
				}
				return (int64(st.Blocks) - int64(st.Bfree)) * int64(st.Bsize)
			},
		},
		{
			name: "RLIMIT_FSIZE via prlimit",
			prepare: func(t *testing.T, root string) string {
				if _, err := exec.LookPath("prlimit"); err != nil {
					return "prlimit (util-linux) not found: " + err.Error()
				}
				return ""
			},
			fill: func(t *testing.T, reg *registry) {
				// The soft limit only, so an unprivileged user can lift it again.
				fltPrlimit(t, reg, strconv.Itoa(size/3)+":")
			},
			free: func(t *testing.T, reg *registry) {
				fltPrlimit(t, reg, "unlimited:")
			},
			errText: "file too large",
			used:    func(*testing.T, string) int64 { return -1 },
		},
	}
	for _, m := range mechanisms {
		t.Run(m.name, func(t *testing.T) {
			root := t.TempDir()
			if reason := m.prepare(t, root); reason != "" {
				t.Skip(reason)
			}
			reg := startRegistry(t, registryOptions{Root: root, UpstreamURL: up.URL()})
			client := &http.Client{Timeout: time.Minute}
			for _, v := range cached {
				if r := fltGet(client, arcOneSegmentURL(reg.URL, arcModX, v)); r.err != nil || r.status != http.StatusOK ||
					!bytes.Equal(r.body, up.Downloads.Archive(arcModX, v)) {
					t.Fatalf("caching %s before the fault: %d, %d bytes, %v", v, r.status, len(r.body), r.err)
				}
			}
			m.fill(t, reg)
			usedBefore := m.used(t, root)
			path := arcUpstreamPath(arcModX, failing)
			countBefore := up.Count(path)

			res := fltGet(client, arcOneSegmentURL(reg.URL, arcModX, failing))
			if res.err != nil {
				t.Fatalf("request with the disk full: %v", res.err)
			}
			if res.status != http.StatusServiceUnavailable {
				t.Errorf("request with the disk full: %d (%.200s), want 503 (moon retries it)", res.status, res.body)
			}
			// The client is told what happened, not where the store lives.
			if strings.Contains(string(res.body), reg.Root) || !strings.Contains(string(res.body), "cannot store") {
				t.Errorf("disk-full answer %q: want a plain message without server paths", res.body)
			}
			if !fltWaitLog(reg, 10*time.Second, "archive fetch failed", m.errText) {
				t.Errorf("no 'archive fetch failed' log line naming %q; log:\n%s", m.errText, reg.Logs())
			}
			// Our own disk failing is not upstream's fault: no retries.
			if n := up.Count(path) - countBefore; n != 1 {
				t.Errorf("upstream saw %d requests for %s, want 1 (a store error is not retried)", n, path)
			}
			wantFiles := []string{}
			for _, v := range cached {
				wantFiles = append(wantFiles, arcModX+"/"+v+".zip")
			}
			if got := arcStoreFiles(t, root); strings.Join(got, ",") != strings.Join(wantFiles, ",") {
				t.Errorf("files under data/packages after the failure: %v, want exactly %v", got, wantFiles)
			}
			if usedBefore >= 0 {
				if after := m.used(t, root); after != usedBefore {
					t.Errorf("filesystem use went from %d to %d bytes across the failed store: space is still held", usedBefore, after)
				}
			}

			for _, v := range cached {
				if r := fltGet(client, arcOneSegmentURL(reg.URL, arcModX, v)); r.err != nil || r.status != http.StatusOK ||
					!bytes.Equal(r.body, up.Downloads.Archive(arcModX, v)) {
					t.Errorf("cached %s with the disk full: %d, %d bytes, %v", v, r.status, len(r.body), r.err)
				}
			}
			if err := fltExpect(reg.URL+"/healthz", http.StatusOK); err != nil {
				t.Error(err)
			}

			m.free(t, reg)
			again := fltGet(client, arcOneSegmentURL(reg.URL, arcModX, failing))
			want := up.Downloads.Archive(arcModX, failing)
			if again.err != nil || again.status != http.StatusOK || !bytes.Equal(again.body, want) {
				t.Errorf("after space is back: %d (%.200s), %v; want 200 and the archive", again.status, again.body, again.err)
			}
			if stored, err := os.ReadFile(arcStorePath(root, arcModX, failing)); err != nil || !bytes.Equal(stored, want) {
				t.Errorf("stored copy after space is back: %d bytes, err %v", len(stored), err)
			}
			if tmp := arcTempFiles(t, root); len(tmp) > 0 {
				t.Errorf("temporary files left: %v", tmp)
			}
		})
	}
}

// TestFaultSIGTERMUnderLoad sends SIGTERM while 20 misses wait on a slow
// upstream and 20 slow clients read a cached 1 MiB archive: every one of
// them gets the whole, right archive; connections opened after the signal
// are refused or answered 503, and a /readyz request completed after it on
// a connection opened before is dropped or answered 503, never served; the
// process exits 0 within the shutdown timeout.
func TestFaultSIGTERMUnderLoad(t *testing.T) {
	const (
		size            = 1 << 20
		n               = 20
		shutdownTimeout = 20 * time.Second
		upstreamDelay   = 1500 * time.Millisecond
	)
	up := startUpstream(t, testupstream.Options{
		Archives:    []testupstream.ModuleVersion{testupstream.EveryVersion(arcModX)},
		ArchiveSize: size,
	})
	all := up.Index.Versions(arcModX)
	if len(all) < n+1 {
		t.Fatalf("%s has %d versions, need %d", arcModX, len(all), n+1)
	}
	cachedV, missVs := all[0], all[1:n+1]
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL(), Env: []string{
		"MOONBIT_REGISTRY_SERVER_SHUTDOWN_TIMEOUT=" + shutdownTimeout.String(),
		// Every miss fetches at once, so all are in flight at the signal.
		"MOONBIT_REGISTRY_CACHE_MAX_CONCURRENT_FETCHES=" + strconv.Itoa(2*n),
	}})
	if r := fltGet(&http.Client{Timeout: time.Minute}, arcOneSegmentURL(reg.URL, arcModX, cachedV)); r.err != nil || r.status != http.StatusOK {
		t.Fatalf("caching %s: %d %v", cachedV, r.status, r.err)
	}
	up.Faults.Delay(upstreamDelay, testupstream.OnPrefix(testupstream.PrefixArchives))

	// A connection accepted now, while the server is idle, whose request
	// is completed only after the signal. Go's server (1.26) drops a
	// request it reads once Shutdown has begun, so /readyz's 503 is only
	// visible in the instant between the two: dropped or 503 are both
	// right, anything else is not.
	probe, probeR := arcDial(t, reg.URL)
	if _, err := io.WriteString(probe, "GET /readyz HTTP/1.1\r\nHost: "+probe.RemoteAddr().String()+"\r\nUser-Agent: mooncake/0.1.0\r\n"); err != nil {
		t.Fatal(err)
	}

	type outcome struct {
		version string
		cached  bool
		res     fltResult
	}
	results := make(chan outcome, 2*n)
	headers := make(chan struct{}, n)
	// The slow readers read nothing until after the signal: the kernel buffers
	// take a few hundred KiB, so each handler is still writing its 1 MiB.
	read := make(chan struct{})
	startReading := sync.OnceFunc(func() { close(read) })
	defer startReading()
	slow := fltSlowClient()
	defer slow.CloseIdleConnections()
	for i := 0; i < n; i++ {
		go func() {
			r := fltSlowGet(slow, arcOneSegmentURL(reg.URL, arcModX, cachedV), headers, read)
			results <- outcome{cachedV, true, r}
		}()
		v := missVs[i]
		go func() {
			results <- outcome{v, false, fltGet(slow, arcOneSegmentURL(reg.URL, arcModX, v))}
		}()
	}
	// In flight: every slow reader has its headers, and upstream holds
	// every miss.
	deadline := time.After(30 * time.Second)
	for i := 0; i < n; i++ {
		select {
		case <-headers:
		case <-deadline:
			t.Fatalf("only %d of %d cached requests got their headers within 30s", i, n)
		}
	}
	for _, v := range missVs {
		fltWaitCount(t, up, arcUpstreamPath(arcModX, v), 1, 30*time.Second)
	}

	signalled := time.Now()
	if err := reg.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !reg.WaitLog(context.Background(), "shutting down", 10*time.Second) {
		t.Fatalf("no 'shutting down' log line within 10s of SIGTERM")
	}

	_, err := io.WriteString(probe, "\r\n")
	var resp *http.Response
	if err == nil {
		resp, err = http.ReadResponse(probeR, &http.Request{Method: http.MethodGet})
	}
	if err != nil {
		t.Logf("/readyz completed after the signal on an open connection: dropped unanswered (%v)", err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "shutting down") {
			t.Errorf("/readyz during the drain: %d %q, want 503 saying it is shutting down (or no answer)", resp.StatusCode, body)
		}
	}
	// New connections, during the drain: refused, dropped, or 503.
	for _, target := range []string{"/healthz", "/readyz", strings.TrimPrefix(arcOneSegmentURL(reg.URL, arcModX, cachedV), reg.URL)} {
		if got := fltNewConnection(reg.URL, target); got != "" {
			t.Errorf("new connection after SIGTERM, GET %s: %s; want it refused or 503", target, got)
		}
	}
	startReading()

	var exited time.Time
	select {
	case <-reg.done:
		exited = time.Now()
	case <-time.After(shutdownTimeout + 10*time.Second):
		t.Fatalf("registry still running %v after SIGTERM", shutdownTimeout+10*time.Second)
	}
	if code := reg.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	if d := exited.Sub(signalled); d > shutdownTimeout {
		t.Errorf("exited %v after SIGTERM, beyond the %v shutdown timeout", d, shutdownTimeout)
	}

	failed := 0
	for i := 0; i < 2*n; i++ {
		var o outcome
		select {
		case o = <-results:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d requests returned after the registry exited", i, 2*n)
		}
		sum := sha256.Sum256(o.res.body)
		if o.res.err != nil || o.res.status != http.StatusOK || hex.EncodeToString(sum[:]) != up.Downloads.Checksum(arcModX, o.version) {
			if failed < 5 {
				t.Errorf("%s (cached %v): status %d, %d bytes, err %v; want 200 and the archive", o.version, o.cached, o.res.status, len(o.res.body), o.res.err)
			}
			failed++
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d in-flight requests did not get their archive across SIGTERM", failed, 2*n)
	}

	// The access log shows which requests the drain waited for: those
	// logged after the shutdown line. Both kinds must be among them, or
	// this test did not exercise the drain.
	cachedPath := strings.TrimPrefix(arcOneSegmentURL(reg.URL, arcModX, cachedV), reg.URL)
	drainedCached, drainedMiss := 0, 0
	afterSignal := false
	for _, line := range strings.Split(reg.Logs(), "\n") {
		if strings.Contains(line, "shutting down") {
			afterSignal = true
			continue
		}
		var e arcAccessEntry
		if !afterSignal || json.Unmarshal([]byte(line), &e) != nil || e.Message != "request" || e.Status != http.StatusOK {
			continue
		}
		switch {
		case e.Path == cachedPath:
			drainedCached++
		case strings.HasPrefix(e.Path, "/user/"):
			drainedMiss++
		}
	}
	t.Logf("drained after SIGTERM: %d cached, %d misses", drainedCached, drainedMiss)
	if drainedCached == 0 || drainedMiss == 0 {
		t.Errorf("requests answered during the drain: %d cached, %d misses; want both kinds in flight at the signal", drainedCached, drainedMiss)
	}

	// The misses were fetched and stored right; nothing else is there.
	arcCheckStored(t, reg.Root, up)
	if tmp := arcTempFiles(t, reg.Root); len(tmp) > 0 {
		t.Errorf("temporary files left after shutdown: %v", tmp)
	}
}

// TestFaultHostilePaths sends 1,000 requests with random hostile paths (a
// fixed seed) to every route: each is answered 4xx (a redirect only if the
// target it names is answered 4xx too), no archive is asked of upstream,
// nothing hostile is forwarded, no file appears or changes outside the
// HTTP cache and the index mirror (a sentinel tree beside the root
// included), and the server still answers /healthz.
func TestFaultHostilePaths(t *testing.T) {
	const total, workers = 1000, 4
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	// A tree beside the root that traversal would target.
	sentinel := filepath.Join(parent, "sentinel")
	for p, data := range map[string]string{
		"secret.txt":                            "secret\n",
		"etc/passwd.zip":                        "not an archive\n",
		"user/moonbitlang/x/0.4.6.zip":          "planted\n",
		"data/packages/moonbitlang/x/0.4.6.zip": "planted\n",
	} {
		full := filepath.Join(sentinel, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{{Module: arcModX, Version: "0.4.6"}}})
	reg := startRegistry(t, registryOptions{Root: root, UpstreamURL: up.URL()})
	up.ResetCounts()
	before := fltSnapshot(t, parent)

	rng := rand.New(rand.NewPCG(20260806, 6))
	targets := make([]string, total)
	prefixes := map[string]int{}
	for i := range targets {
		targets[i] = fltHostileTarget(rng)
		for _, p := range fltHostilePrefixes {
			if strings.HasPrefix(targets[i], p) {
				prefixes[p]++
			}
		}
	}
	for _, p := range fltHostilePrefixes {
		if prefixes[p] < total/20 {
			t.Fatalf("generator gave only %d of %d targets under %s", prefixes[p], total, p)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mu sync.Mutex
	var failures []string
	fail := func(s string) {
		mu.Lock()
		failures = append(failures, s)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &fltRawConn{addr: strings.TrimPrefix(reg.URL, "http://")}
			defer c.close()
			for i := w; i < total && ctx.Err() == nil; i += workers {
				if msg := fltCheckHostile(c, targets[i]); msg != "" {
					fail(fmt.Sprintf("#%d GET %.300q: %s", i, targets[i], msg))
				}
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("%d hostile requests did not finish within 60s", total)
	}
	sort.Strings(failures)
	for i, f := range failures {
		if i == 10 {
			t.Errorf("... and %d more", len(failures)-10)
			break
		}
		t.Error(f)
	}

	if c := arcCounts(up); len(c) != 0 {
		t.Errorf("upstream was asked for archives: %v", c)
	}
	// What did reach upstream (the pass-through) carried nothing a path
	// parser could trip on.
	for p := range up.Counts() {
		if fltUnsafeForwarded(p) {
			t.Errorf("forwarded to upstream: %q", p)
		}
	}
	if err := fltExpect(reg.URL+"/healthz", http.StatusOK); err != nil {
		t.Errorf("after the hostile requests: %v", err)
	}

	// The only writes a request may cause: new HTTP cache entries
	// (upstream's 404s for asset and API paths), and git's bookkeeping in
	// the index mirror should a well-formed but unknown name ask for an
	// index refresh. Nothing in the archive store, nothing outside data/.
	httpCacheEntry := regexp.MustCompile(`^root/data/http-cache/[0-9a-f]{2}(/[0-9a-f]{64})?$`)
	for _, d := range fltDiff(before, fltSnapshot(t, parent)) {
		kind, rest, _ := strings.Cut(d, " ")
		rel, _, _ := strings.Cut(rest, ":")
		if (kind == "added" && httpCacheEntry.MatchString(rel)) || strings.HasPrefix(rel, "root/data/index/") {
			continue
		}
		t.Errorf("filesystem changed: %s", d)
	}
}

// ---- helpers of the fault tests ----

// fltResult is one request's outcome, safe to produce off the test goroutine.
type fltResult struct {
	status  int
	body    []byte
	err     error
	elapsed time.Duration
}

// fltGet sends a GET as the moon client would and reads the whole answer.
func fltGet(client *http.Client, u string) fltResult {
	start := time.Now()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return fltResult{err: err}
	}
	req.Header.Set("User-Agent", "mooncake/0.1.0")
	resp, err := client.Do(req)
	if err != nil {
		return fltResult{err: err, elapsed: time.Since(start)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return fltResult{status: resp.StatusCode, body: body, err: err, elapsed: time.Since(start)}
}

// fltExpect GETs u and checks the status.
func fltExpect(u string, status int) error {
	r := fltGet(&http.Client{Timeout: 30 * time.Second}, u)
	if r.err != nil {
		return fmt.Errorf("GET %s: %w", u, r.err)
	}
	if r.status != status {
		return fmt.Errorf("GET %s: %d (%s), want %d", u, r.status, bytes.TrimSpace(r.body), status)
	}
	return nil
}

// fltWaitCount waits (bounded) until upstream has seen n requests for path.
func fltWaitCount(t testing.TB, up *testupstream.Upstream, path string, n int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for up.Count(path) < n {
		if time.Now().After(deadline) {
			t.Fatalf("upstream saw %d requests for %s within %v, want %d", up.Count(path), path, d, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fltLogHas reports whether one log line contains every substring.
func fltLogHas(r *registry, subs ...string) bool {
	return fltLogCount(r, subs...) > 0
}

func fltLogCount(r *registry, subs ...string) int {
	n := 0
	for _, line := range strings.Split(r.Logs(), "\n") {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(line, s)
		}
		if all {
			n++
		}
	}
	return n
}

// fltWaitLog waits (bounded) for a log line containing every substring.
func fltWaitLog(r *registry, d time.Duration, subs ...string) bool {
	deadline := time.Now().Add(d)
	for !fltLogHas(r, subs...) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// fltWaitLogCount waits (bounded) for n log lines containing sub.
func fltWaitLogCount(r *registry, sub string, n int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for fltLogCount(r, sub) < n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// fltWarmRoot makes a registry root whose index mirror is synced from up
// and whose store holds arcModX@version, as a registry that has served
// a client leaves it, and returns it with the archive's bytes.
func fltWarmRoot(t *testing.T, up *testupstream.Upstream, version string) (string, []byte) {
	t.Helper()
	root := t.TempDir()
	first := startRegistry(t, registryOptions{Root: root, UpstreamURL: up.URL()})
	warm := newMoonClient(t, first.URL)
	if err := warm.CloneIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	want, err := warm.Download(context.Background(), arcModX, version)
	if err != nil {
		t.Fatal(err)
	}
	first.Stop(t)
	return root, want
}

// fltSnapshot describes every file and directory under dir (relative,
// slash separated): type, mode, size, modification time and content hash.
// A missing dir is an empty snapshot.
func fltSnapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			// A directory's mtime changes with its entries, which are
			// compared themselves.
			out[rel] = fmt.Sprintf("dir %v", fi.Mode())
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			out[rel] = fmt.Sprintf("file %v %d %d %x", fi.Mode(), fi.Size(), fi.ModTime().UnixNano(), sum[:8])
		default:
			out[rel] = fmt.Sprintf("other %v", fi.Mode())
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

// fltDiff lists entries added, removed or changed between two snapshots.
func fltDiff(before, after map[string]string) []string {
	var out []string
	for p, a := range after {
		b, ok := before[p]
		switch {
		case !ok:
			out = append(out, "added "+p)
		case a != b:
			out = append(out, fmt.Sprintf("changed %s: %s -> %s", p, b, a))
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			out = append(out, "removed "+p)
		}
	}
	sort.Strings(out)
	return out
}

// fltGitHead is the commit main points to in a repository.
func fltGitHead(t testing.TB, dir string) string {
	t.Helper()
	cmd := exec.Command("git", "-C", dir, "rev-parse", "main")
	cmd.Env = testsupport.GitEnv(t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git rev-parse main in %s: %v: %s", dir, err, out)
	}
	return strings.TrimSpace(string(out))
}

// fltFree is the space available on dir's filesystem.
func fltFree(t testing.TB, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// fltPrlimit sets the running registry's file size limit (RLIMIT_FSIZE),
// in prlimit's soft:hard syntax.
func fltPrlimit(t testing.TB, reg *registry, limit string) {
	t.Helper()
	pid := strconv.Itoa(reg.cmd.Process.Pid)
	if out, err := exec.Command("prlimit", "--pid", pid, "--fsize="+limit).CombinedOutput(); err != nil {
		t.Fatalf("prlimit --pid %s --fsize=%s: %v: %s", pid, limit, err, out)
	}
}

// fltSlowClient makes a new connection per request with a small receive
// buffer and small segments, so a slow reader really holds the server's
// writes back instead of the kernels' buffers taking the whole body at once.
func fltSlowClient() *http.Client {
	dialer := &net.Dialer{
		Timeout: 10 * time.Second,
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = errors.Join(
					syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10),
					// Loopback's 64 KiB segments would let the server's
					// send buffer grow past 1 MiB at once.
					syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, 1024))
			})
			return errors.Join(err, serr)
		},
	}
	return &http.Client{
		Timeout:   2 * time.Minute,
		Transport: &http.Transport{DialContext: dialer.DialContext, DisableKeepAlives: true},
	}
}

// fltSlowGet announces on headers once the answer's headers are in, waits
// for read to be closed, then reads the body 16 KiB at a time with a pause
// in between (at least 1.3s for 1 MiB).
func fltSlowGet(client *http.Client, u string, headers chan<- struct{}, read <-chan struct{}) fltResult {
	start := time.Now()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		headers <- struct{}{}
		return fltResult{err: err}
	}
	req.Header.Set("User-Agent", "mooncake/0.1.0")
	resp, err := client.Do(req)
	headers <- struct{}{}
	if err != nil {
		return fltResult{err: err, elapsed: time.Since(start)}
	}
	defer resp.Body.Close()
	<-read
	var body bytes.Buffer
	buf := make([]byte, 16<<10)
	for {
		n, err := resp.Body.Read(buf)
		body.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return fltResult{status: resp.StatusCode, body: body.Bytes(), err: err, elapsed: time.Since(start)}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fltResult{status: resp.StatusCode, body: body.Bytes(), elapsed: time.Since(start)}
}

// fltNewConnection opens a new connection and sends GET target. It returns
// "" if the connection was refused or dropped or the answer was 503, and
// what happened otherwise.
func fltNewConnection(base, target string) string {
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 5*time.Second)
	if err != nil {
		return "" // refused
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	req := "GET " + target + " HTTP/1.1\r\nHost: " + conn.RemoteAddr().String() + "\r\nUser-Agent: mooncake/0.1.0\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return ""
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodGet})
	if err != nil {
		return "" // dropped
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable {
		return ""
	}
	return "answered " + resp.Status
}

// Hostile path material. Every target starts with one of the prefixes and
// mixes tokens joined by (possibly encoded) separators.
var fltHostilePrefixes = []string{"/user/", "/git/index/", "/assets/", "/api/v0/", "/symbols.zip/"}

// fltToken is a path piece; persistent ones survive ServeMux's cleaning of
// literal dot and empty segments and no real resource contains them.
type fltToken struct {
	s          string
	persistent bool
}

func fltHostileTokens() [][]fltToken {
	p := func(ss ...string) []fltToken {
		out := make([]fltToken, len(ss))
		for i, s := range ss {
			out[i] = fltToken{s, true}
		}
		return out
	}
	plain := func(ss ...string) []fltToken {
		out := make([]fltToken, len(ss))
		for i, s := range ss {
			out[i] = fltToken{s, false}
		}
		return out
	}
	return [][]fltToken{
		// literal dots and empty segments: cleaned by the router
		plain("..", ".", "", "...", "..;"),
		// encoded dots
		p("%2e%2e", "%2E%2E", ".%2e", "%2e.", "%2e", "%2e%2e%2F%2e%2e", "..%2F..%2F..%2Fsentinel%2Fsecret.txt",
			"%2e%2e%2F%2e%2e%2F%2e%2e%2Fsentinel", "..%5C..%5Csentinel%5Csecret.txt"),
		// NUL and backslashes, encoded and raw
		p("%00", "x%00", "%00.zip", "0.4.6%00", "%5C", "%5c", `\`, `..\..\sentinel`, "%2F%2F", "%2f%2f"),
		// very long segments
		p(strings.Repeat("a", 300), strings.Repeat("%41", 200), strings.Repeat("b", 5000)),
		// unicode: real non-ASCII names, overlong and invalid UTF-8,
		// fullwidth dots, a right-to-left override
		append(plain("原来可以发中文包", "🐫", "%E5%8E%9F"),
			p("%c0%ae%c0%ae", "%C0%AE", "%ff%fe", "%ef%bc%8e%ef%bc%8e", "\u202e", "%E2%80%AE")...),
		// bad semver
		p("latest", "v0.4.6", "01.2.3", "1.2.3-01", "0.4..6", "1.2.3-", "1.2.3+", "0.4.zip", "-1.0.0"),
		// names real requests use, to make the rest look plausible
		plain("moonbitlang", "x", "0.4.6", "0.4.6.zip", "info", "refs", "HEAD", "objects", "search",
			"user", "data", "packages", "sentinel", "etc", "passwd.zip"),
	}
}

var fltHostileSeps = []string{"/", "/", "/", "%2F", "%2f", "%5C", "//"}

// fltHostileTarget draws one request target. A target whose cleaned form
// (what the router redirects literal dot segments to) holds no persistent
// token could name a real resource, so it is drawn again.
func fltHostileTarget(rng *rand.Rand) string {
	tokens := fltHostileTokens()
	for {
		prefix := fltHostilePrefixes[rng.IntN(len(fltHostilePrefixes))]
		var b strings.Builder
		b.WriteString(prefix)
		var used []fltToken
		for i, n := 0, 1+rng.IntN(10); i < n; i++ {
			if i > 0 {
				b.WriteString(fltHostileSeps[rng.IntN(len(fltHostileSeps))])
			}
			class := tokens[rng.IntN(len(tokens))]
			tok := class[rng.IntN(len(class))]
			used = append(used, tok)
			b.WriteString(tok.s)
		}
		if prefix == "/user/" && rng.IntN(10) < 7 {
			b.WriteString(".zip")
		}
		if rng.IntN(100) == 0 {
			// Over the server's 64 KiB header limit.
			b.WriteString(strings.Repeat("c", 70000))
			used = append(used, fltToken{strings.Repeat("c", 1000), true})
		}
		target := b.String()
		cleaned := fltCleanPath(target)
		for _, tok := range used {
			if tok.persistent && strings.Contains(cleaned, tok.s) {
				return target
			}
		}
	}
}

// fltCleanPath is what Go's ServeMux redirects to: the escaped path with
// literal "." and ".." segments resolved and repeated slashes collapsed,
// keeping a trailing slash.
func fltCleanPath(p string) string {
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// fltRawConn is one keep-alive connection for raw request targets, redialled
// when the server closes it.
type fltRawConn struct {
	addr string
	conn net.Conn
	br   *bufio.Reader
}

func (c *fltRawConn) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// get sends GET target exactly as given and returns the status, the
// Location header and the start of the body.
func (c *fltRawConn) get(target string) (int, string, []byte, error) {
	for attempt := 0; ; attempt++ {
		reused := c.conn != nil
		if c.conn == nil {
			conn, err := net.DialTimeout("tcp", c.addr, 10*time.Second)
			if err != nil {
				return 0, "", nil, err
			}
			c.conn, c.br = conn, bufio.NewReader(conn)
		}
		c.conn.SetDeadline(time.Now().Add(30 * time.Second))
		status, loc, body, closeAfter, err := c.roundTrip(target)
		if err == nil {
			if closeAfter {
				c.close()
			}
			return status, loc, body, nil
		}
		c.close()
		// A kept-alive connection may have been closed by the server
		// just before the request went out: one retry on a new one.
		if !reused || attempt > 0 {
			return 0, "", nil, err
		}
	}
}

func (c *fltRawConn) roundTrip(target string) (status int, location string, body []byte, closeAfter bool, err error) {
	req := "GET " + target + " HTTP/1.1\r\nHost: " + c.addr + "\r\nUser-Agent: mooncake/0.1.0\r\n\r\n"
	if _, err := io.WriteString(c.conn, req); err != nil {
		return 0, "", nil, false, err
	}
	resp, err := http.ReadResponse(c.br, &http.Request{Method: http.MethodGet})
	if err != nil {
		return 0, "", nil, false, err
	}
	body, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return 0, "", nil, false, err
	}
	return resp.StatusCode, resp.Header.Get("Location"), body, resp.Close, nil
}

// fltCheckHostile sends target and follows at most three same-server
// redirects; it returns "" when the final answer is 4xx.
func fltCheckHostile(c *fltRawConn, target string) string {
	hops := []string{}
	for hop := 0; hop <= 3; hop++ {
		status, loc, body, err := c.get(target)
		switch {
		case err != nil:
			return fmt.Sprintf("after %v: %v", hops, err)
		case status >= 400 && status < 500:
			return ""
		case status >= 300 && status < 400:
			// Only a path on this server: anything else would be an
			// open redirect.
			if !strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, "//") {
				return fmt.Sprintf("%d redirect to %q", status, loc)
			}
			hops = append(hops, fmt.Sprintf("%d -> %.120q", status, loc))
			target = loc
		default:
			return fmt.Sprintf("%d (%.200s) after redirects %v, want 4xx", status, body, hops)
		}
	}
	return fmt.Sprintf("more than 3 redirects: %v", hops)
}

// fltUnsafeForwarded reports an upstream request path (decoded) that a
// pass-through should never have sent: an archive or index path (those
// have routes of their own), or one with a dot segment, NUL, control byte
// or backslash. Other paths under the download base are passed on.
func fltUnsafeForwarded(p string) bool {
	if strings.HasPrefix(p, "/user/") || strings.HasPrefix(p, "/git/") || p == "/" {
		return true
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] == 0x7f || p[i] == '\\' {
			return true
		}
	}
	return false
}
