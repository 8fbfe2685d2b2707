package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"moonbit-registry/internal/testupstream"
)

// evictArchiveSize is the exact size of every archive the eviction test
// serves, so a limit can be counted in archives.
const evictArchiveSize = 64 << 10

// evictRoomFor is a [cache] max_size that holds n archives but not n+1, with
// n under the 90% low-water mark an eviction pass leaves.
func evictRoomFor(n int) int { return n*evictArchiveSize + evictArchiveSize/2 }

// TestEvictMaxSizeThroughBinary sets MOONBIT_REGISTRY_CACHE_MAX_SIZE to room
// for three archives and downloads eight through the real server as the moon
// client does: data/packages never holds more than the limit, the least
// recently used archive goes first (a hit counts as a use), each eviction is
// logged, an evicted archive downloads again correctly, and a restart with a
// smaller limit learns what is stored and shrinks it.
func TestEvictMaxSizeThroughBinary(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const module = "moonbitlang/x"
	up := startUpstream(t, testupstream.Options{
		Archives:    []testupstream.ModuleVersion{testupstream.EveryVersion(module)},
		ArchiveSize: evictArchiveSize,
	})
	root := t.TempDir()
	max := evictRoomFor(3)
	env := []string{"MOONBIT_REGISTRY_CACHE_MAX_SIZE=" + strconv.Itoa(max)}
	reg := startRegistry(t, registryOptions{Root: root, UpstreamURL: up.URL(), Env: env})
	client := newMoonClient(t, reg.URL)
	if err := client.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}
	all, err := client.Versions(module)
	if err != nil || len(all) < 8 {
		t.Fatalf("versions of %s: %v %v (need 8)", module, all, err)
	}
	v := all[:8]
	for _, version := range v {
		if n := len(up.Downloads.Archive(module, version)); n != evictArchiveSize {
			t.Fatalf("upstream archive %s@%s is %d bytes, want %d", module, version, n, evictArchiveSize)
		}
	}

	first := map[string][]byte{}
	download := func(version string, limit int) {
		t.Helper()
		data, err := client.Download(ctx, module, version) // checks the index SHA-256
		if err != nil {
			t.Fatal(err)
		}
		if prev, ok := first[version]; ok && !bytes.Equal(prev, data) {
			t.Fatalf("%s@%s: different bytes on a second download", module, version)
		}
		first[version] = data
		// The pass runs before the fetch returns, so the limit holds as
		// soon as the response is complete.
		if kept, total := evictStore(t, root); total > int64(limit) {
			t.Fatalf("after downloading %s: data/packages holds %d bytes (%v), limit %d", version, total, kept, limit)
		}
	}
	expectKept := func(want ...string) {
		t.Helper()
		slices.Sort(want)
		if kept, _ := evictStore(t, root); !slices.Equal(kept, want) {
			t.Errorf("data/packages holds %v, want %v", kept, want)
		}
	}

	// 0, 1, 2 fill the cache; 0 is used again, so fetching 3 evicts 1.
	for _, version := range v[:3] {
		download(version, max)
	}
	download(v[0], max)
	if n := up.Count(evictUpstreamPath(module, v[0])); n != 1 {
		t.Fatalf("second download of %s was not a hit: upstream asked %d times", v[0], n)
	}
	download(v[3], max)
	expectKept(v[0], v[2], v[3])
	// Then least recently used first: 2, 0, 3, 4.
	for _, version := range v[4:8] {
		download(version, max)
	}
	expectKept(v[5], v[6], v[7])

	// Log lines reach the test through a pipe, possibly after the response.
	wantEvicted := []string{module + "@" + v[1], module + "@" + v[2], module + "@" + v[0], module + "@" + v[3], module + "@" + v[4]}
	var recs []map[string]any
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		recs = evictLogRecords(t, reg.Logs(), "archive evicted")
		if len(recs) >= len(wantEvicted) || time.Now().After(deadline) {
			break
		}
	}
	var evicted []string
	for _, rec := range recs {
		evicted = append(evicted, rec["archive"].(string))
		if rec["bytes"] != float64(evictArchiveSize) || rec["last_used"] == nil {
			t.Errorf("eviction log record %v lacks the size or the last use", rec)
		}
	}
	if !slices.Equal(evicted, wantEvicted) {
		t.Errorf("evictions logged: %v, want %v", evicted, wantEvicted)
	}

	// An evicted archive comes back from upstream, byte for byte.
	download(v[1], max)
	if n := up.Count(evictUpstreamPath(module, v[1])); n != 2 {
		t.Errorf("evicted %s: upstream asked %d times, want 2", v[1], n)
	}
	expectKept(v[1], v[6], v[7])

	// Restart with room for one: the start-up walk counts the three stored
	// archives and keeps the most recently used.
	reg.Stop(t)
	small := evictRoomFor(1)
	reg = startRegistry(t, registryOptions{Root: root, UpstreamURL: up.URL(),
		Env: []string{"MOONBIT_REGISTRY_CACHE_MAX_SIZE=" + strconv.Itoa(small)}})
	if !reg.WaitLog(ctx, "archive store scanned for the size limit", 30*time.Second) {
		t.Fatalf("no start-up walk logged:\n%s", reg.Logs())
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		kept, total := evictStore(t, root)
		if total <= int64(small) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30s after restarting with max_size %d: data/packages holds %d bytes (%v)", small, total, kept)
		}
		time.Sleep(20 * time.Millisecond)
	}
	expectKept(v[1])
	client = newMoonClient(t, reg.URL)
	if err := client.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}
	download(v[7], small)
	expectKept(v[7])
}

// evictStore lists the archive versions under <root>/data/packages
// (temporary files excluded) and their total size.
func evictStore(t *testing.T, root string) (versions []string, total int64) {
	t.Helper()
	dir := filepath.Join(root, "data", "packages")
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".tmp" {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() && strings.HasSuffix(d.Name(), ".zip") {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			total += fi.Size()
			versions = append(versions, strings.TrimSuffix(d.Name(), ".zip"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(versions)
	return versions, total
}

// evictUpstreamPath is the decoded path the test upstream counts.
func evictUpstreamPath(module, version string) string {
	return "/user/" + module + "/" + version + ".zip"
}

// evictLogRecords returns the JSON log records with this message, in order.
func evictLogRecords(t *testing.T, logs, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(logs, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["message"] == msg {
			out = append(out, rec)
		}
	}
	return out
}
