package testupstream

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"moonbit-registry/internal/testsupport"
)

// Downloads is what the upstream serves under its DownloadURL: the module
// zips at /user/<owner>/<rest>/<version>.zip, /symbols.zip, prebuilt
// assets under /assets/ and any other file set with SetFile. Zips are
// added as the index publishes versions. Its methods are safe for
// concurrent use.
type Downloads struct {
	archiveSize int // Options.ArchiveSize, the padded size of built zips

	mu       sync.RWMutex
	archives map[string]archive // by module + "@" + version
	symbols  []byte
	files    map[string][]byte // assets and SetFile's files, by request path
}

func newDownloads(archiveSize int) (*Downloads, error) {
	symbols, err := defaultSymbols()
	if err != nil {
		return nil, err
	}
	return &Downloads{
		archiveSize: archiveSize,
		archives:    map[string]archive{},
		symbols:     symbols,
		files:       map[string][]byte{},
	}, nil
}

// defaultSymbols is a small fixed zip standing in for the symbols database.
func defaultSymbols() ([]byte, error) {
	return testsupport.Zip(archiveTime(), testsupport.ZipFile{Name: "symbols.json", Data: []byte("{\"symbols\": []}\n")})
}

// build builds module@version's zip, padded to the configured size, without
// serving it yet.
func (d *Downloads) build(module, version string, deps json.RawMessage) (archive, error) {
	data, err := BuildArchive(module, version, deps, d.archiveSize)
	if err != nil {
		return archive{}, err
	}
	return newArchive(data), nil
}

// put serves a as module@version's zip.
func (d *Downloads) put(module, version string, a archive) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.archives[module+"@"+version] = a
}

// has reports whether a zip is served for module@version.
func (d *Downloads) has(module, version string) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	_, ok := d.archives[module+"@"+version]
	return ok
}

// Archive returns a copy of the zip served for module@version, or nil if
// none is served.
func (d *Downloads) Archive(module, version string) []byte {
	d.mu.RLock()
	defer d.mu.RUnlock()
	a, ok := d.archives[module+"@"+version]
	if !ok {
		return nil
	}
	return append([]byte(nil), a.data...)
}

// Checksum returns the lowercase hex SHA-256 of the zip served for
// module@version (the checksum in the served index), or "" if none.
func (d *Downloads) Checksum(module, version string) string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.archives[module+"@"+version].sum
}

// Archives lists the module versions that have a zip, sorted.
func (d *Downloads) Archives() []ModuleVersion {
	d.mu.RLock()
	out := make([]ModuleVersion, 0, len(d.archives))
	for k := range d.archives {
		m, v, _ := strings.Cut(k, "@")
		out = append(out, ModuleVersion{m, v})
	}
	d.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Module != out[j].Module {
			return out[i].Module < out[j].Module
		}
		return out[i].Version < out[j].Version
	})
	return out
}

// SetSymbols replaces the /symbols.zip body (and so its ETag).
func (d *Downloads) SetSymbols(data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.symbols = append([]byte(nil), data...)
}

// Symbols returns a copy of the /symbols.zip body.
func (d *Downloads) Symbols() []byte {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return append([]byte(nil), d.symbols...)
}

// SymbolsETag is the ETag /symbols.zip is served with, quotes included.
func (d *Downloads) SymbolsETag() string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return etag(d.symbols)
}

// SetFile serves data at path (percent-decoded, from the root, e.g.
// "/future/artifact.bin"): a download path that no route of its own knows.
// A nil data removes it.
func (d *Downloads) SetFile(path string, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if data == nil {
		delete(d.files, path)
		return
	}
	d.files[path] = append([]byte(nil), data...)
}

// SetAsset serves data at path, given with or without the leading
// "/assets" (e.g. "/assets/owner/mod@1.0.0/x.wasm" or "owner/mod@1.0.0/x.wasm").
// A nil data removes the asset. Unset assets are 404, meaning "no prebuilt
// asset" to the client.
func (d *Downloads) SetAsset(path string, data []byte) {
	path = "/" + strings.TrimPrefix(strings.TrimPrefix(path, "/"), "assets/")
	d.SetFile("/assets"+path, data)
}

// serveArchive answers /user/<owner>/<rest>/<version>.zip. The client's
// one-segment form (%2F between parts) decodes to the same path.
func (d *Downloads) serveArchive(w http.ResponseWriter, r *http.Request) {
	if !getOrHead(w, r) {
		return
	}
	rest := strings.TrimPrefix(r.URL.Path, "/user/")
	i := strings.LastIndexByte(rest, '/')
	if !strings.HasSuffix(rest, ".zip") || i < 0 {
		http.NotFound(w, r)
		return
	}
	module, version := rest[:i], strings.TrimSuffix(rest[i+1:], ".zip")
	d.mu.RLock()
	a, ok := d.archives[module+"@"+version]
	d.mu.RUnlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("ETag", `"`+a.sum+`"`)
	// Published archives never change.
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	http.ServeContent(w, r, "", archiveTime(), bytes.NewReader(a.data))
}

// serveSymbols answers /symbols.zip, revalidated by ETag on every use.
func (d *Downloads) serveSymbols(w http.ResponseWriter, r *http.Request) {
	if !getOrHead(w, r) {
		return
	}
	d.mu.RLock()
	data := d.symbols
	d.mu.RUnlock()
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("ETag", etag(data))
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}

// serveFile answers an asset or a file set with SetFile; 404 otherwise.
func (d *Downloads) serveFile(w http.ResponseWriter, r *http.Request) {
	if !getOrHead(w, r) {
		return
	}
	d.mu.RLock()
	data, ok := d.files[r.URL.Path]
	d.mu.RUnlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", etag(data))
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}
