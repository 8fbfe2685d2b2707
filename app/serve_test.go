package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"moonbit-registry/app"
	"moonbit-registry/config"
	"moonbit-registry/internal/testupstream"
	"moonbit-registry/module"
	"moonbit-registry/store/mem"
)

// serveInProcess runs the registry in this process on 127.0.0.1 over an
// in-memory archive store, against up, until the test ends.
func serveInProcess(t *testing.T, up *testupstream.Upstream, archives *mem.Store) string {
	t.Helper()
	cfg, err := config.Load(config.LoadOptions{Root: t.TempDir(), Flags: []config.Override{
		{Key: "upstream.index_url", Value: up.IndexURL(), Name: "test"},
		{Key: "upstream.download_url", Value: up.DownloadURL(), Name: "test"},
		{Key: "upstream.api_url", Value: up.URL(), Name: "test"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.ServeOn(ctx, cfg, ln, archives, zerolog.Nop(), zerolog.Nop()) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("ServeOn: %v", err)
		}
	})
	base := "http://" + ln.Addr().String()
	for range 600 { // up to a minute for the first sync
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the registry did not become ready")
	return ""
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// TestServeInProcess: the whole registry, in-process on the in-memory
// store: a miss is fetched once and verified into the store, a hit comes
// from it, and moon view is answered.
func TestServeInProcess(t *testing.T) {
	mv := module.Version{Module: "moonbitlang/x", Version: "0.4.6"}
	up := testupstream.Start(t, testupstream.Options{Archives: []testupstream.ModuleVersion{{Module: mv.Module, Version: mv.Version}}})
	archives := mem.New()
	base := serveInProcess(t, up, archives)
	want := up.Downloads.Archive(mv.Module, mv.Version)
	for _, round := range []string{"miss", "hit"} {
		if status, body := get(t, base+"/user/"+mv.RelPath()); status != http.StatusOK || !bytes.Equal(body, want) {
			t.Fatalf("%s: %d, %d bytes", round, status, len(body))
		}
	}
	if n := up.Count("/user/" + mv.RelPath()); n != 1 {
		t.Errorf("upstream asked %d times for the archive, want 1", n)
	}
	obj, err := archives.Open(t.Context(), mv)
	if err != nil {
		t.Fatalf("the in-memory store does not hold %s: %v", mv, err)
	}
	obj.Close()
	status, body := get(t, base+"/api/v0/manifest/moonbitlang/x@0.4.6")
	var view struct{ Module, Version string }
	if status != http.StatusOK || json.Unmarshal(body, &view) != nil || view.Module != mv.Module || view.Version != mv.Version {
		t.Errorf("moon view: %d %s", status, body)
	}
}
