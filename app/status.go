package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"moonbit-registry/config"
	"moonbit-registry/indexsync"
	"moonbit-registry/internal/human"
	"moonbit-registry/web"
)

// LocalStatus is the status read from a registry root, without a server:
// the index mirror's commit and when it last fetched, and the store's
// size.
func LocalStatus(ctx context.Context, cfg config.Config) (web.Status, error) {
	st := web.Status{Version: Version(), Store: countStore(cfg), Index: web.IndexStatus{AgeSeconds: -1, Offline: cfg.Server.Offline}, Local: true}
	// Read only: a server may be running on this root.
	commit, err := indexsync.ReadCommit(ctx, cfg.Index.Dir)
	if err != nil {
		return st, err
	}
	st.Index.Commit = commit
	// The mirror keeps no history of its syncs; its last fetch is FETCH_HEAD's time.
	if fi, err := os.Stat(filepath.Join(cfg.Index.Dir, ".git", "FETCH_HEAD")); err == nil && st.Index.Commit != "" {
		st.Index.LastSync = fi.ModTime()
		st.Index.AgeSeconds = int64(time.Since(fi.ModTime()).Seconds())
	}
	return st, nil
}

// ServerStatus asks a running registry for its status (/-/status.json);
// token, if set, is sent as a bearer token.
func ServerStatus(ctx context.Context, server, token string) (web.Status, error) {
	var st web.Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(server, "/")+"/-/status.json", nil)
	if err != nil {
		return st, UsageError{fmt.Errorf("--server: %w", err)}
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return st, fmt.Errorf("status of %s: %w", server, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return st, fmt.Errorf("status of %s: %s: %s", server, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return st, fmt.Errorf("status of %s: %w", server, err)
	}
	st.Uptime = time.Duration(st.UptimeSeconds) * time.Second
	return st, nil
}

// withoutServerKeys is st as a JSON object without web.ServerOnlyKeys:
// a local status does not claim an uptime of 0 or an unreachable upstream.
func withoutServerKeys(st web.Status) map[string]any {
	var obj map[string]any
	data, _ := json.Marshal(st) // a struct of plain fields: cannot fail
	_ = json.Unmarshal(data, &obj)
	for _, key := range web.ServerOnlyKeys {
		if parent, child, ok := strings.Cut(key, "."); ok {
			if sub, isObj := obj[parent].(map[string]any); isObj {
				delete(sub, child)
			}
			continue
		}
		delete(obj, key)
	}
	return obj
}

// WriteStatus prints st for people, or as JSON.
func WriteStatus(w io.Writer, st web.Status, asJSON bool) error {
	if asJSON {
		st.UptimeSeconds = int64(st.Uptime.Seconds())
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if st.Local {
			return enc.Encode(withoutServerKeys(st))
		}
		return enc.Encode(st)
	}
	commit := st.Index.Commit
	if commit == "" {
		commit = "none yet (no sync so far)"
	}
	age := "never"
	if st.Index.AgeSeconds >= 0 {
		age = (time.Duration(st.Index.AgeSeconds) * time.Second).String() + " ago"
	}
	archives := "not counted"
	if st.Store.Archives >= 0 {
		archives = fmt.Sprint(st.Store.Archives)
	}
	fmt.Fprintf(w, "index:    %s, last synced %s\n", commit, age)
	ago := func(t time.Time) string { return time.Since(t).Round(time.Second).String() + " ago" }
	switch {
	case st.Index.Offline:
		fmt.Fprintf(w, "upstream: offline mode, never contacted\n")
	case !st.Local && !st.Index.UpstreamChecked.IsZero() && st.Index.UpstreamOK:
		fmt.Fprintf(w, "upstream: reachable (last contact %s)\n", ago(st.Index.UpstreamChecked))
	case !st.Local && !st.Index.UpstreamChecked.IsZero():
		fmt.Fprintf(w, "upstream: not reachable (last contact %s): %s\n", ago(st.Index.UpstreamChecked), st.Index.UpstreamError)
	}
	if st.Index.LastError != "" {
		fmt.Fprintf(w, "index:    the last sync failed: %s\n", st.Index.LastError)
	}
	limit := ""
	if st.Store.MaxBytes > 0 {
		limit = " (limit " + human.Bytes(st.Store.MaxBytes) + ")"
	}
	fmt.Fprintf(w, "store:    %s, %s archives, %s%s\n", st.Store.Backend, archives, human.Bytes(st.Store.Bytes), limit)
	if st.Uptime > 0 {
		fmt.Fprintf(w, "traffic:  last hour %d hits, %d misses, %d upstream fetches; %d running\n", st.LastHour.Hits, st.LastHour.Misses, st.LastHour.Fetches, st.InFlight)
		fmt.Fprintf(w, "server:   %s, up %s\n", st.Version, st.Uptime)
	} else {
		fmt.Fprintf(w, "version:  %s\n", st.Version)
	}
	return nil
}
