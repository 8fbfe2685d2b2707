package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"moonbit-registry/internal/testupstream"
)

// Modules for the archive tests, all from the real index: one with many
// versions, one that depends on it, one with '+' build metadata in a
// version, and two with non-ASCII names.
const (
	arcModX        = "moonbitlang/x"
	arcModTempfile = "mizchi/tempfile" // depends on moonbitlang/x
	arcModPlus     = "bzy-debug/hello" // has 0.1.20240510+81e045f4e
	arcModChinese  = "CAIMEOX/原来可以发中文包"
	arcModCamel    = "illusory0x0/🐫"
)

// TestArchiveMoonClientPasses downloads every version of several modules as
// the moon client does, three times: from upstream, from the cache only, and
// from the cache with upstream down. The plain-slash URL form must return
// the same bytes.
func TestArchiveMoonClientPasses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	modules := []string{arcModX, arcModTempfile, arcModPlus, arcModChinese, arcModCamel}
	var sel []testupstream.ModuleVersion
	for _, m := range modules {
		sel = append(sel, testupstream.EveryVersion(m))
	}
	up := startUpstream(t, testupstream.Options{Archives: sel})
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL()})
	client := newMoonClient(t, reg.URL)
	if err := client.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}

	type mv struct{ module, version string }
	var all []mv
	plus := false
	for _, m := range modules {
		versions, err := client.Versions(m)
		if err != nil || len(versions) == 0 {
			t.Fatalf("versions of %s in the cloned index: %v %v", m, versions, err)
		}
		for _, v := range versions {
			all = append(all, mv{m, v})
			plus = plus || strings.Contains(v, "+")
		}
	}
	if !plus {
		t.Fatal("no version with '+' build metadata selected; the test would not cover %2B")
	}

	first := map[mv][]byte{}
	for _, a := range all {
		data, err := client.Download(ctx, a.module, a.version)
		if err != nil {
			t.Fatalf("first pass: %v", err)
		}
		first[a] = data
		if n := up.Count(arcUpstreamPath(a.module, a.version)); n != 1 {
			t.Errorf("first pass: upstream saw %d requests for %s@%s, want 1", n, a.module, a.version)
		}
		// The store's documented layout: <cache.dir>/<owner>/<rest>/<version>.zip.
		stored, err := os.ReadFile(arcStorePath(reg.Root, a.module, a.version))
		if err != nil || !bytes.Equal(stored, data) {
			t.Errorf("stored copy of %s@%s: %d bytes, err %v; want the %d bytes served", a.module, a.version, len(stored), err, len(data))
		}
	}
	afterFirst := arcCounts(up)
	if len(afterFirst) != len(all) {
		t.Errorf("upstream saw %d archive paths, want %d", len(afterFirst), len(all))
	}

	pass := func(name string) {
		t.Helper()
		for _, a := range all {
			data, err := client.Download(ctx, a.module, a.version)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !bytes.Equal(data, first[a]) {
				t.Errorf("%s: %s@%s differs from the first download", name, a.module, a.version)
			}
			forms := []string{arcPlainURL(reg.URL, a.module, a.version)}
			if strings.Contains(a.version, "+") {
				// A hand-typed URL may carry '+' unescaped; in a path it
				// is a plus, not a space.
				forms = append(forms, strings.ReplaceAll(arcOneSegmentURL(reg.URL, a.module, a.version), "%2B", "+"))
			}
			for _, u := range forms {
				res := arcFetch(t, http.MethodGet, u, nil)
				if res.status != http.StatusOK || !bytes.Equal(res.body, first[a]) {
					t.Errorf("%s: GET %s: %d, %d bytes; want 200 and the same %d bytes",
						name, u, res.status, len(res.body), len(first[a]))
				}
			}
		}
		if got := arcCounts(up); !arcEqualCounts(got, afterFirst) {
			t.Errorf("%s: upstream archive requests changed from %v to %v; want cache hits only", name, afterFirst, got)
		}
	}
	pass("second pass")
	if err := up.Down(); err != nil {
		t.Fatal(err)
	}
	pass("upstream down")
}

// TestArchiveConcurrentMiss sends 100 requests for one archive nobody has
// fetched yet, while upstream is slow: they must share one upstream fetch.
func TestArchiveConcurrentMiss(t *testing.T) {
	const version = "0.4.6"
	up := startUpstream(t, testupstream.Options{
		Archives:    []testupstream.ModuleVersion{{Module: arcModX, Version: version}},
		ArchiveSize: 256 << 10,
	})
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL()})
	path := arcUpstreamPath(arcModX, version)
	// Slow enough that every request arrives while the first fetch runs.
	up.Faults.Delay(500*time.Millisecond, testupstream.OnPrefix(path))
	want := up.Downloads.Archive(arcModX, version)

	const n = 100
	client := &http.Client{
		Timeout:   2 * time.Minute,
		Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n},
	}
	defer client.CloseIdleConnections()
	start := make(chan struct{})
	errs := make(chan string, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := client.Get(arcOneSegmentURL(reg.URL, arcModX, version))
			if err != nil {
				errs <- err.Error()
				return
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
				errs <- "status " + resp.Status + ", " + strconv.Itoa(len(body)) + " bytes, read error " + arcErrString(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	failed := 0
	for e := range errs {
		if failed < 5 {
			t.Error(e)
		}
		failed++
	}
	if failed > 0 {
		t.Errorf("%d of %d requests did not get the archive", failed, n)
	}
	if got := up.Count(path); got != 1 {
		t.Errorf("upstream saw %d requests for %s, want 1", got, path)
	}
}

// TestArchiveCutResumed: upstream's body for a 10 MiB archive is cut at
// 9 MiB; upstream honours Range, so the miss costs it the missing MiB
// (about 10 MiB in all), not the whole archive again (19 MiB), and the
// client gets the whole archive, verified.
func TestArchiveCutResumed(t *testing.T) {
	t.Parallel()
	const version, size, cut = "0.4.6", 10 << 20, 9 << 20
	up := startUpstream(t, testupstream.Options{
		Archives:    []testupstream.ModuleVersion{{Module: arcModX, Version: version}},
		ArchiveSize: size,
	})
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL()})
	path := arcUpstreamPath(arcModX, version)
	up.Faults.TruncateAt(cut, testupstream.OnPrefix(path), testupstream.Times(1))
	want := up.Downloads.Archive(arcModX, version)
	before := up.BytesSent()
	res := arcFetch(t, http.MethodGet, arcOneSegmentURL(reg.URL, arcModX, version), nil)
	if res.status != http.StatusOK || !bytes.Equal(res.body, want) {
		t.Fatalf("miss: %d, %d bytes; want 200 and the whole archive", res.status, len(res.body))
	}
	sent := up.BytesSent() - before
	t.Logf("upstream sent %.2f MiB for a %d MiB archive cut at %d MiB", float64(sent)/(1<<20), size>>20, cut>>20)
	if sent > size+size/10 {
		t.Errorf("upstream sent %d bytes; a resumed miss costs about %d", sent, size)
	}
	if n := up.Count(path); n != 2 {
		t.Errorf("upstream saw %d requests for the archive, want 2 (the cut one and the rest)", n)
	}
	// Served again from the store: upstream is not asked.
	if res := arcFetch(t, http.MethodGet, arcOneSegmentURL(reg.URL, arcModX, version), nil); res.status != http.StatusOK || !bytes.Equal(res.body, want) {
		t.Errorf("hit after the resumed miss: %d", res.status)
	}
	if n := up.Count(path); n != 2 {
		t.Errorf("upstream saw %d requests after the hit, want 2", n)
	}
}

// TestArchiveUpstreamFaults checks that an upstream sending wrong, cut or
// no bytes never leaves a corrupt or partial archive behind, that transient
// failures are retried and 404 is not.
func TestArchiveUpstreamFaults(t *testing.T) {
	t.Parallel()
	// moonbitlang/x@0.4.20 is in the index but upstream has no zip for it.
	served := []string{"0.4.2", "0.4.3", "0.4.4", "0.4.5", "0.4.6", "0.4.7"}
	var sel []testupstream.ModuleVersion
	for _, v := range served {
		sel = append(sel, testupstream.ModuleVersion{Module: arcModX, Version: v})
	}
	up := startUpstream(t, testupstream.Options{Archives: sel, ArchiveSize: 64 << 10})
	// Retries set explicitly: the expected upstream request counts follow it.
	const retries = 3
	reg := startRegistry(t, registryOptions{
		UpstreamURL: up.URL(),
		Env:         []string{"MOONBIT_REGISTRY_UPSTREAM_RETRIES=" + strconv.Itoa(retries)},
	})

	tests := []struct {
		name    string
		version string
		fault   func(prefix testupstream.FaultOption)
		status  int
		text    string // in the error body
		count   int    // upstream requests for the archive
		// recovers: after Faults.Clear the next request gets the archive.
		recovers bool
		// streamed: the failure may come after the miss began to stream,
		// and then cuts the transfer short instead of a status.
		streamed bool
	}{
		{name: "wrong bytes", version: "0.4.2", status: 502, text: "checksum", count: 1, recovers: true, streamed: true,
			fault: func(p testupstream.FaultOption) { up.Faults.WrongBytes(p) }},
		{name: "reset mid-body once", version: "0.4.3", status: 200, count: 2,
			fault: func(p testupstream.FaultOption) { up.Faults.ResetMidBody(p, testupstream.Times(1)) }},
		{name: "truncated every time", version: "0.4.4", status: 502, count: 1 + retries, recovers: true, streamed: true,
			fault: func(p testupstream.FaultOption) { up.Faults.Truncate(p) }},
		{name: "503 twice", version: "0.4.5", status: 200, count: 3,
			fault: func(p testupstream.FaultOption) { up.Faults.FailWith(503, p, testupstream.Times(2)) }},
		{name: "404 for a version the index lists", version: "0.4.20", status: 404, count: 1,
			fault: func(testupstream.FaultOption) {}},
		{name: "unknown version", version: "9.9.9", status: 404, text: "not in the index", count: 0,
			fault: func(testupstream.FaultOption) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer up.Faults.Clear()
			path := arcUpstreamPath(arcModX, tt.version)
			tt.fault(testupstream.OnPrefix(path))
			res, cut := arcFetchMaybeCut(t, arcOneSegmentURL(reg.URL, arcModX, tt.version))
			if cut != nil {
				if !tt.streamed || res.status != http.StatusOK {
					t.Fatalf("status %d, then the transfer broke (%v); want %d", res.status, cut, tt.status)
				}
				if len(res.body) >= len(up.Downloads.Archive(arcModX, tt.version)) {
					t.Fatalf("the transfer broke after all %d bytes: the last must be held back", len(res.body))
				}
				// The fetch goes on after the client's transfer broke.
				arcWaitUpstream(t, up, path, tt.count)
				res = arcResponse{status: tt.status, body: []byte(tt.text)}
			} else if res.status != tt.status {
				t.Fatalf("status %d (%s), want %d", res.status, res.body, tt.status)
			}
			if got := up.Count(path); got != tt.count {
				t.Errorf("upstream saw %d requests for %s, want %d", got, path, tt.count)
			}
			want := up.Downloads.Archive(arcModX, tt.version)
			if tt.status == http.StatusOK {
				if !bytes.Equal(res.body, want) {
					t.Errorf("got %d bytes that are not the archive", len(res.body))
				}
			} else {
				if !strings.Contains(string(res.body), tt.text) {
					t.Errorf("error body %q does not say %q", res.body, tt.text)
				}
				if _, err := os.Lstat(arcStorePath(reg.Root, arcModX, tt.version)); !os.IsNotExist(err) {
					t.Errorf("a failed fetch left something at the archive's path (stat: %v)", err)
				}
			}
			if tmp := arcTempFiles(t, reg.Root); len(tmp) > 0 {
				t.Errorf("temporary files left: %v", tmp)
			}
			if !tt.recovers {
				return
			}
			up.Faults.Clear()
			// The failed fetch may still be ending (the count above is
			// upstream's, not the fetch's end): a request that joins it
			// gets its failure; one after it gets the archive.
			var again arcResponse
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				var cut error
				again, cut = arcFetchMaybeCut(t, arcOneSegmentURL(reg.URL, arcModX, tt.version))
				joined := cut != nil || again.status == tt.status // the failed fetch, streamed or not
				if !joined || time.Now().After(deadline) {
					break
				}
			}
			if again.status != http.StatusOK || !bytes.Equal(again.body, want) {
				t.Errorf("after upstream recovered: %d (%d bytes), want 200 and the archive", again.status, len(again.body))
			}
		})
	}
	// Every archive in the store is one that was served right.
	arcCheckStored(t, reg.Root, up)
}

// TestArchiveRejectsHostilePaths sends paths no index entry could produce,
// byte for byte as written: 400, nothing asked of upstream, nothing written.
func TestArchiveRejectsHostilePaths(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{{Module: arcModX, Version: "0.4.6"}}})
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL()})
	up.ResetCounts()
	for _, tt := range []struct{ name, target string }{
		{"dot-dot escape", "/user/..%2F..%2Fetc%2Fpasswd.zip"},
		{"encoded dots", "/user/%2e%2e%2F%2e%2e%2Fetc%2Fpasswd.zip"},
		{"dot-dot inside module", "/user/moonbitlang%2F..%2F..%2F0.4.6.zip"},
		{"NUL", "/user/moonbitlang%2Fx%00%2F0.4.6.zip"},
		{"NUL in version", "/user/moonbitlang%2Fx%2F0.4.6%00.zip"},
		{"very long", "/user/moonbitlang%2F" + strings.Repeat("x", 5000) + "%2F0.4.6.zip"},
		{"many segments", "/user/" + strings.Repeat("a%2F", 900) + "0.4.6.zip"},
		{"empty segment", "/user/moonbitlang%2F%2Fx%2F0.4.6.zip"},
		{"empty owner", "/user/%2Fx%2F0.4.6.zip"},
		{"no module name", "/user/moonbitlang%2F0.4.6.zip"},
		{"bad semver", "/user/moonbitlang%2Fx%2F0.4.zip"},
		{"leading zero", "/user/moonbitlang%2Fx%2F0.04.6.zip"},
		{"not semver", "/user/moonbitlang%2Fx%2Flatest.zip"},
		{"not a zip", "/user/moonbitlang%2Fx%2F0.4.6.tar"},
		{"backslash", "/user/moonbitlang%5Cx%2F0.4.6.zip"},
		{"temp dir", "/user/.tmp%2Fput-1%2F0.4.6.zip"},
		{"bad escape", "/user/moonbitlang%2Fx%2F0.4.6%zz.zip"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := arcSendRaw(t, reg.URL, "GET", tt.target, nil)
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("GET %s: %d (%.200s), want 400", tt.target, resp.StatusCode, body)
			}
		})
	}
	// Literal dot and empty segments never reach the archive handler: the
	// router redirects to the cleaned path. Not followed here, they must
	// not be served or fetched either.
	for _, target := range []string{
		"/user/../etc/passwd.zip",
		"/user/moonbitlang/x/../x/0.4.6.zip",
		"/user/moonbitlang//x/0.4.6.zip",
		"/user/moonbitlang/./x/0.4.6.zip",
	} {
		resp, _ := arcSendRaw(t, reg.URL, "GET", target, nil)
		if resp.StatusCode < 300 || resp.StatusCode >= 500 {
			t.Errorf("GET %s: %d, want a redirect or a 4xx", target, resp.StatusCode)
		}
	}
	if c := up.Counts(); len(c) != 0 {
		t.Errorf("upstream was asked: %v", c)
	}
	if files := arcStoreFiles(t, reg.Root); len(files) > 0 {
		t.Errorf("files written under data/packages: %v", files)
	}
	if tmp := arcTempFiles(t, reg.Root); len(tmp) > 0 {
		t.Errorf("temporary files written: %v", tmp)
	}
	// Nothing named after the hostile targets appeared anywhere in the root.
	filepath.WalkDir(reg.Root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && (d.Name() == "passwd.zip" || d.Name() == "etc") {
			t.Errorf("hostile path reached the filesystem: %s", p)
		}
		return nil
	})
}

// TestArchiveOffline serves a root whose index was synced earlier with
// --offline: cached archives are served, a miss is 504 without any request
// upstream. Last, with upstream down (not offline), a miss is 504 too.
func TestArchiveOffline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const cachedV, missV = "0.4.6", "0.4.7"
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{
		{Module: arcModX, Version: cachedV}, {Module: arcModX, Version: missV},
	}})
	tests := []struct {
		name string
		// prepare syncs the index into root, and caches archives; it
		// returns the versions it cached.
		prepare func(t *testing.T, root string) []string
	}{
		{name: "index synced by an earlier server", prepare: func(t *testing.T, root string) []string {
			reg := startRegistry(t, registryOptions{Root: root, UpstreamURL: up.URL()})
			c := newMoonClient(t, reg.URL)
			if err := c.CloneIndex(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Download(ctx, arcModX, cachedV); err != nil {
				t.Fatal(err)
			}
			reg.Stop(t)
			return []string{cachedV}
		}},
		{name: "index synced by the sync command", prepare: func(t *testing.T, root string) []string {
			if _, stderr, code := runRegistry(t, root, up.URL(), "sync"); code != 0 {
				t.Fatalf("sync: exit %d: %s", code, stderr)
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			cached := tt.prepare(t, root)
			up.ResetCounts()
			reg := startRegistry(t, registryOptions{Root: root, UpstreamURL: up.URL(), Args: []string{"--offline"}})
			c := newMoonClient(t, reg.URL)
			if err := c.CloneIndex(ctx); err != nil {
				t.Fatalf("clone from the offline server: %v", err)
			}
			for _, v := range cached {
				if _, err := c.Download(ctx, arcModX, v); err != nil {
					t.Errorf("cached archive offline: %v", err)
				}
			}
			miss := arcFetch(t, http.MethodGet, arcOneSegmentURL(reg.URL, arcModX, missV), nil)
			if miss.status != http.StatusGatewayTimeout {
				t.Errorf("offline miss: %d (%s), want 504", miss.status, miss.body)
			}
			// Offline by choice: waiting will not help, mirror will.
			for _, s := range []string{"not cached", "offline by choice", "moonbit-registry mirror " + arcModX + "@" + missV} {
				if !strings.Contains(string(miss.body), s) {
					t.Errorf("offline miss body %q does not say %q", miss.body, s)
				}
			}
			if strings.Contains(string(miss.body), "try again") {
				t.Errorf("offline miss body %q tells the client to try again", miss.body)
			}
			unknown := arcFetch(t, http.MethodGet, arcOneSegmentURL(reg.URL, arcModX, "9.9.9"), nil)
			if unknown.status != http.StatusNotFound {
				t.Errorf("offline, unknown version: %d (%s), want 404", unknown.status, unknown.body)
			}
			if n := up.Counts(); len(n) != 0 {
				t.Errorf("offline server contacted upstream: %v", n)
			}
		})
	}
	t.Run("upstream down", func(t *testing.T) {
		reg := startRegistry(t, registryOptions{UpstreamURL: up.URL()})
		if err := up.Down(); err != nil {
			t.Fatal(err)
		}
		defer up.Up()
		res := arcFetch(t, http.MethodGet, arcOneSegmentURL(reg.URL, arcModX, missV), nil)
		if res.status != http.StatusGatewayTimeout || !strings.Contains(string(res.body), "not cached") {
			t.Errorf("miss with upstream down: %d (%s), want 504 saying it is not cached", res.status, res.body)
		}
	})
}

// TestSymbolsRevalidated: /symbols.zip is fetched once, revalidated with
// upstream on every later request, answered 304 to a client holding the
// current ETag, and served from the stored copy while upstream is down.
func TestSymbolsRevalidated(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, testupstream.Options{})
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL()})
	want, etag := up.Downloads.Symbols(), up.Downloads.SymbolsETag()
	steps := []struct {
		name        string
		down        bool
		ifNoneMatch string
		status      int
		upstream    int    // upstream /symbols.zip requests after the step
		cache       string // the access log's cache outcome
	}{
		{name: "first request", status: 200, upstream: 1, cache: "miss"},
		{name: "revalidated", status: 200, upstream: 2, cache: "hit"},
		{name: "client has the current ETag", ifNoneMatch: etag, status: 304, upstream: 3, cache: "hit"},
		{name: "client has an old ETag", ifNoneMatch: `"old"`, status: 200, upstream: 4, cache: "hit"},
		{name: "upstream down", down: true, status: 200, upstream: 4, cache: "stale"},
	}
	for i, st := range steps {
		if st.down {
			if err := up.Down(); err != nil {
				t.Fatal(err)
			}
		}
		hdr := http.Header{}
		if st.ifNoneMatch != "" {
			hdr.Set("If-None-Match", st.ifNoneMatch)
		}
		res := arcFetch(t, http.MethodGet, reg.URL+"/symbols.zip", hdr)
		if res.status != st.status {
			t.Fatalf("%s: status %d (%s), want %d", st.name, res.status, res.body, st.status)
		}
		if st.status == http.StatusOK && !bytes.Equal(res.body, want) {
			t.Errorf("%s: body is not upstream's symbols.zip (%d bytes)", st.name, len(res.body))
		}
		if st.status == http.StatusNotModified && len(res.body) != 0 {
			t.Errorf("%s: 304 with a %d byte body", st.name, len(res.body))
		}
		if got := res.header.Get("ETag"); got != etag {
			t.Errorf("%s: ETag %q, want upstream's %q", st.name, got, etag)
		}
		if got := up.Count("/symbols.zip"); got != st.upstream {
			t.Errorf("%s: upstream saw %d requests, want %d", st.name, got, st.upstream)
		}
		logs := arcWaitAccessLogs(t, reg, "/symbols.zip", i+1)
		if got := logs[i].Cache; got != st.cache {
			t.Errorf("%s: access log says cache %q, want %q", st.name, got, st.cache)
		}
	}
}

// TestArchiveHitHTTPSemantics checks the headers and conditional and range
// handling of an archive served from the cache.
func TestArchiveHitHTTPSemantics(t *testing.T) {
	t.Parallel()
	const version = "0.4.6"
	up := startUpstream(t, testupstream.Options{
		Archives:    []testupstream.ModuleVersion{{Module: arcModX, Version: version}},
		ArchiveSize: 32 << 10,
	})
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL()})
	data := up.Downloads.Archive(arcModX, version)
	etag := `"` + up.Downloads.Checksum(arcModX, version) + `"`
	u := arcOneSegmentURL(reg.URL, arcModX, version)
	if res := arcFetch(t, http.MethodGet, u, nil); res.status != http.StatusOK {
		t.Fatalf("warming the cache: %d %s", res.status, res.body)
	}
	before := up.Count(arcUpstreamPath(arcModX, version))

	tests := []struct {
		name   string
		method string
		header map[string]string
		status int
		body   []byte
		length string // Content-Length; "" means not checked
		extra  map[string]string
	}{
		{name: "GET", method: "GET", status: 200, body: data, length: strconv.Itoa(len(data))},
		{name: "HEAD", method: "HEAD", status: 200, body: nil, length: strconv.Itoa(len(data))},
		{name: "range", method: "GET", header: map[string]string{"Range": "bytes=0-9"}, status: 206, body: data[:10],
			length: "10", extra: map[string]string{"Content-Range": "bytes 0-9/" + strconv.Itoa(len(data))}},
		{name: "if-none-match current", method: "GET", header: map[string]string{"If-None-Match": etag}, status: 304},
		{name: "if-none-match other", method: "GET", header: map[string]string{"If-None-Match": `"other"`}, status: 200, body: data},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := http.Header{}
			for k, v := range tt.header {
				hdr.Set(k, v)
			}
			res := arcFetch(t, tt.method, u, hdr)
			if res.status != tt.status {
				t.Fatalf("status %d, want %d", res.status, tt.status)
			}
			if !bytes.Equal(res.body, tt.body) {
				t.Errorf("body: %d bytes, want %d", len(res.body), len(tt.body))
			}
			want := map[string]string{"ETag": etag, "Cache-Control": "public, max-age=31536000, immutable"}
			if tt.length != "" {
				want["Content-Length"] = tt.length
			}
			for k, v := range tt.extra {
				want[k] = v
			}
			for k, v := range want {
				if got := res.header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
		})
	}
	// Go's client never reads a body after HEAD whatever the server sends;
	// on one raw connection, a body after HEAD would garble the next answer.
	t.Run("HEAD sends no body", func(t *testing.T) {
		conn, br := arcDial(t, reg.URL)
		target := strings.TrimPrefix(u, reg.URL)
		arcWriteRaw(t, conn, "HEAD", target, nil)
		resp, err := http.ReadResponse(br, &http.Request{Method: "HEAD"})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Length") != strconv.Itoa(len(data)) {
			t.Fatalf("HEAD: %d, Content-Length %q", resp.StatusCode, resp.Header.Get("Content-Length"))
		}
		arcWriteRaw(t, conn, "GET", "/healthz", nil)
		next, err := http.ReadResponse(br, &http.Request{Method: "GET"})
		if err != nil {
			t.Fatalf("answer after HEAD unreadable (a body was sent?): %v", err)
		}
		body, _ := io.ReadAll(next.Body)
		next.Body.Close()
		if next.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
			t.Errorf("answer after HEAD: %d %q", next.StatusCode, body)
		}
	})
	if got := up.Count(arcUpstreamPath(arcModX, version)); got != before {
		t.Errorf("hits asked upstream: %d requests, had %d", got, before)
	}
}

// ---- helpers shared by the archive tests, the crash test and the benchmark ----

// arcOneSegmentURL is the archive URL current moon clients send.
func arcOneSegmentURL(base, module, version string) string {
	return base + "/user/" + url.QueryEscape(module+"/"+version) + ".zip"
}

// arcPlainURL is the documented plain-slash form, each segment escaped
// ('+' too, as a client would have to).
func arcPlainURL(base, module, version string) string {
	segs := strings.Split(module+"/"+version+".zip", "/")
	for i, s := range segs {
		segs[i] = strings.ReplaceAll(url.PathEscape(s), "+", "%2B")
	}
	return base + "/user/" + strings.Join(segs, "/")
}

// arcUpstreamPath is the decoded path the test upstream counts.
func arcUpstreamPath(module, version string) string {
	return "/user/" + module + "/" + version + ".zip"
}

// arcStorePath is where the store keeps an archive under a registry root.
// arcCheckStored asserts that every stored archive (all of arcModX) hashes
// to the checksum upstream's index gives it.
func arcCheckStored(t *testing.T, root string, up *testupstream.Upstream) {
	t.Helper()
	for _, f := range arcStoreFiles(t, root) {
		data, err := os.ReadFile(filepath.Join(root, "data", "packages", f))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		v := strings.TrimSuffix(filepath.Base(f), ".zip")
		if got := hex.EncodeToString(sum[:]); got != up.Downloads.Checksum(arcModX, v) {
			t.Errorf("stored %s has sha256 %s, index says %s", f, got, up.Downloads.Checksum(arcModX, v))
		}
	}
}

func arcStorePath(root, module, version string) string {
	return filepath.Join(root, "data", "packages", filepath.FromSlash(module), version+".zip")
}

// arcCounts is the upstream's request counts for archive paths only.
func arcCounts(up *testupstream.Upstream) map[string]int {
	out := map[string]int{}
	for p, n := range up.Counts() {
		if strings.HasPrefix(p, testupstream.PrefixArchives) {
			out[p] = n
		}
	}
	return out
}

func arcEqualCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// arcStoreFiles lists every regular file under <root>/data/packages, slash
// separated and relative to it, temporary ones included.
func arcStoreFiles(t testing.TB, root string) []string {
	t.Helper()
	dir := filepath.Join(root, "data", "packages")
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

// arcTempFiles lists files under data/packages that are not a published
// archive: anything but <module>/<version>.zip, e.g. leftovers in .tmp.
func arcTempFiles(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	for _, f := range arcStoreFiles(t, root) {
		if strings.HasPrefix(f, ".") || strings.Contains(f, "/.") || !strings.HasSuffix(f, ".zip") {
			out = append(out, f)
		}
	}
	return out
}

// arcResponse is a fully read HTTP answer.
type arcResponse struct {
	status int
	header http.Header
	body   []byte
}

// arcFetch sends one request (no redirects followed) and reads the answer.
func arcFetch(t testing.TB, method, u string, hdr http.Header) arcResponse {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "mooncake/0.1.0")
	client := &http.Client{
		Timeout:       2 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, u, err)
	}
	return arcResponse{status: resp.StatusCode, header: resp.Header, body: body}
}

// arcFetchMaybeCut is a GET that returns, instead of failing, a body that
// broke off (a streamed miss whose download failed) with the error.
func arcFetchMaybeCut(t testing.TB, u string) (arcResponse, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", "mooncake/0.1.0")
	resp, err := (&http.Client{Timeout: 2 * time.Minute}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return arcResponse{status: resp.StatusCode, header: resp.Header, body: body}, err
}

// arcWaitUpstream waits (bounded) until upstream has seen n requests for
// path: a fetch carries on after the request that started it is gone.
func arcWaitUpstream(t testing.TB, up *testupstream.Upstream, path string, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); up.Count(path) < n && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
}

// arcDial opens a TCP connection to a registry base URL.
func arcDial(t testing.TB, base string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	return conn, bufio.NewReader(conn)
}

// arcWriteRaw writes a request with target exactly as given, which Go's client
// would normalise.
func arcWriteRaw(t testing.TB, conn net.Conn, method, target string, hdr map[string]string) {
	t.Helper()
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\nHost: " + conn.RemoteAddr().String() + "\r\nUser-Agent: mooncake/0.1.0\r\n")
	for k, v := range hdr {
		b.WriteString(k + ": " + v + "\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
}

// arcSendRaw sends one request with a raw target and reads the answer.
func arcSendRaw(t testing.TB, base, method, target string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	conn, br := arcDial(t, base)
	arcWriteRaw(t, conn, method, target, hdr)
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %.100s: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// arcAccessEntry is one access log line of the registry.
type arcAccessEntry struct {
	Message string `json:"message"`
	Method  string `json:"method"`
	Path    string `json:"path"`
	Status  int    `json:"status"`
	Cache   string `json:"cache"`
}

// arcWaitAccessLogs waits (bounded) until the registry has logged at least n
// requests for path, and returns them in order. The line is written after
// the answer, so it can trail the client's read.
func arcWaitAccessLogs(t testing.TB, r *registry, path string, n int) []arcAccessEntry {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var out []arcAccessEntry
		for _, line := range strings.Split(r.Logs(), "\n") {
			var e arcAccessEntry
			if json.Unmarshal([]byte(line), &e) == nil && e.Message == "request" && e.Path == path {
				out = append(out, e)
			}
		}
		if len(out) >= n {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d access log lines for %s after 10s, want %d", len(out), path, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func arcErrString(err error) string {
	if err == nil {
		return "none"
	}
	return err.Error()
}
