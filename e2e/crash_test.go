package e2e

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"moonbit-registry/internal/testupstream"
)

// TestArchiveCrashMidDownload kills the registry (SIGKILL) while it fetches
// an archive, restarts it on the same root and checks that nothing partial
// was ever visible at the archive's path and that the next request fetches
// it cleanly.
func TestArchiveCrashMidDownload(t *testing.T) {
	t.Parallel()
	const size = 1 << 20
	up := startUpstream(t, testupstream.Options{
		Archives: []testupstream.ModuleVersion{
			{Module: arcModX, Version: "0.4.6"}, {Module: arcModX, Version: "0.4.7"},
		},
		ArchiveSize: size,
	})
	tests := []struct {
		name    string
		version string
		// inFlight makes the download stall and returns the download URL
		// the first registry should use.
		inFlight func(t *testing.T, path string) string
		// started reports (bounded by the caller) that the download is in
		// flight far enough for the crash to matter.
		started func(t *testing.T, root, path string) bool
	}{
		{
			name:    "upstream hangs before answering",
			version: "0.4.6",
			inFlight: func(t *testing.T, path string) string {
				up.Faults.Hang(testupstream.OnPrefix(path))
				return up.URL()
			},
			started: func(_ *testing.T, _, path string) bool { return up.Count(path) >= 1 },
		},
		{
			// The test upstream cannot stop halfway through a body, so a
			// relay passes on the headers and the first 128 KiB only: the
			// registry has a partly written temporary file when it dies.
			name:    "upstream stalls mid-body",
			version: "0.4.7",
			inFlight: func(t *testing.T, _ string) string {
				return arcStallRelay(t, up.Addr(), 128<<10)
			},
			started: func(t *testing.T, root, _ string) bool {
				// Any file: a store writing in place would show here too.
				for _, f := range arcStoreFiles(t, root) {
					if fi, err := os.Stat(filepath.Join(root, "data", "packages", f)); err == nil && fi.Size() >= 64<<10 {
						return true
					}
				}
				return false
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer up.Faults.Clear()
			root := t.TempDir()
			path := arcUpstreamPath(arcModX, tt.version)
			final := arcStorePath(root, arcModX, tt.version)
			download := tt.inFlight(t, path)
			reg := startRegistry(t, registryOptions{
				Root: root, UpstreamURL: up.URL(),
				Env: []string{"MOONBIT_REGISTRY_UPSTREAM_DOWNLOAD_URL=" + download},
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan struct{})
			go func() {
				defer close(done)
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, arcOneSegmentURL(reg.URL, arcModX, tt.version), nil)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
			deadline := time.Now().Add(30 * time.Second)
			for !tt.started(t, root, path) {
				if time.Now().After(deadline) {
					t.Fatalf("download not in flight after 30s; upstream counts %v, store %v", up.Counts(), arcStoreFiles(t, root))
				}
				time.Sleep(10 * time.Millisecond)
			}
			if _, err := os.Lstat(final); !os.IsNotExist(err) {
				t.Fatalf("archive visible at %s while still downloading (stat: %v)", final, err)
			}
			reg.Kill()
			cancel()
			<-done
			if _, err := os.Lstat(final); !os.IsNotExist(err) {
				t.Fatalf("archive visible at %s after the crash (stat: %v)", final, err)
			}

			up.Faults.Clear()
			before := up.Count(path)
			reg2 := startRegistry(t, registryOptions{Root: root, UpstreamURL: up.URL()})
			// The restart cleans up after the dead process before serving.
			if tmp := arcTempFiles(t, root); len(tmp) > 0 {
				t.Errorf("temporary files of the killed process survive the restart: %v", tmp)
			}
			res := arcFetch(t, http.MethodGet, arcOneSegmentURL(reg2.URL, arcModX, tt.version), nil)
			want := up.Downloads.Archive(arcModX, tt.version)
			if res.status != http.StatusOK || !bytes.Equal(res.body, want) {
				t.Fatalf("after restart: %d, %d bytes; want 200 and the %d byte archive", res.status, len(res.body), len(want))
			}
			if got := up.Count(path) - before; got != 1 {
				t.Errorf("after restart upstream saw %d requests, want 1", got)
			}
			if stored, err := os.ReadFile(final); err != nil || !bytes.Equal(stored, want) {
				t.Errorf("stored archive after restart: %d bytes, err %v; want the archive", len(stored), err)
			}
			if tmp := arcTempFiles(t, root); len(tmp) > 0 {
				t.Errorf("temporary files left: %v", tmp)
			}
		})
	}
}

// arcStallRelay listens on 127.0.0.1 and forwards each connection to
// target, but passes on only the first limit bytes of what target sends,
// then holds the connection open until the test ends. It returns the
// relay's base URL.
func arcStallRelay(t *testing.T, target string, limit int64) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	stop := make(chan struct{})
	t.Cleanup(func() {
		close(stop)
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			track(client)
			track(server)
			wg.Add(2)
			go func() {
				defer wg.Done()
				io.Copy(server, client)
			}()
			go func() {
				defer wg.Done()
				io.CopyN(client, server, limit)
				<-stop
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}
