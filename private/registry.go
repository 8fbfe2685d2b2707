// Package private keeps a team's own modules: it checks an archive made by
// `moon package`, stores it through the one verify-and-store pipeline
// (store.PutVerified), records its index line in the store beside the
// archives (so every replica of a fleet sees it), and renders the .index
// files the served index overlays on upstream's. Only owners reserved in
// the configuration ([private] owners) may be published, and upstream's
// lines for those owners never reach clients.
package private

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
	"slices"
	"sort"
	"strings"
	"time"

	"moonbit-registry/cache"
	"moonbit-registry/manifest"
	"moonbit-registry/module"
	"moonbit-registry/store"
)

// Options configures a Registry.
type Options struct {
	// Owners are the reserved owners ([private] owners).
	Owners []string
	// Records keep the index lines; Store the archives.
	Records store.Records
	Store   store.Store
	// MaxArchiveSize caps an archive; 0 means DefaultMaxArchiveSize.
	MaxArchiveSize int64
	// TempDir is where an archive is held while it is checked ("" is the
	// system's).
	TempDir string
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
	// ReadOnly refuses every change (a registry serving offline from a
	// read-only copy).
	ReadOnly bool
}

// Registry publishes, deprecates and yanks private modules and lists them
// for the served index.
type Registry struct {
	opts  Options
	index Index // nil until UseIndex
}

// Index is the index the registry's modules are served in.
type Index interface {
	// Versions lists a module's versions in it (none, with a nil error,
	// for a module it lacks). A publish whose dependency no listed version
	// satisfies is refused: clients could not resolve it.
	Versions(ctx context.Context, mod string) ([]string, error)
	// Recompose rebuilds it after a publish, deprecation or yank.
	Recompose(ctx context.Context) error
}

// UseIndex names the index the registry's modules are served in. The
// index reads the registry's files (an indexsync.Overlay) and so is made
// after it; this closes the loop, once, before the registry is used.
// Without it nothing is checked against an index or rebuilt.
func (r *Registry) UseIndex(idx Index) { r.index = idx }

// New returns a Registry.
func New(opts Options) *Registry {
	if opts.MaxArchiveSize <= 0 {
		opts.MaxArchiveSize = DefaultMaxArchiveSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.Owners = slices.Clone(opts.Owners)
	return &Registry{opts: opts}
}

// Owners are the reserved owners.
func (r *Registry) Owners() []string { return slices.Clone(r.opts.Owners) }

// Owns reports whether mod belongs to a reserved owner, in any case: on
// macOS and Windows clients "ACME" and "acme" are one directory, so no
// spelling of a reserved owner comes from upstream.
func (r *Registry) Owns(mod string) bool {
	return r.reserved(module.Owner(mod)) != ""
}

// reserved is the reserved owner that owner folds to, "" for none.
func (r *Registry) reserved(owner string) string {
	for _, o := range r.opts.Owners {
		if strings.EqualFold(o, owner) {
			return o
		}
	}
	return ""
}

// Published is the outcome of a publish. In JSON (the publish endpoint's
// answer) it is {"name", "version", "checksum", "existed"}.
type Published struct {
	Archive  module.Version
	Checksum string
	// Existed: the same bytes were published before; nothing changed.
	Existed bool
}

// publishedJSON is Published on the wire.
type publishedJSON struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Checksum string `json:"checksum"`
	Existed  bool   `json:"existed"`
}

// MarshalJSON writes the publish endpoint's answer.
func (p Published) MarshalJSON() ([]byte, error) {
	return json.Marshal(publishedJSON{Name: p.Archive.Module, Version: p.Archive.Version, Checksum: p.Checksum, Existed: p.Existed})
}

// UnmarshalJSON reads the publish endpoint's answer.
func (p *Published) UnmarshalJSON(data []byte) error {
	var j publishedJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*p = Published{Archive: module.Version{Module: j.Name, Version: j.Version}, Checksum: j.Checksum, Existed: j.Existed}
	return nil
}

// pendingTimeout: a publish that claimed a version and did not finish in
// this long (its process died) may be taken over by another publish.
const pendingTimeout = 10 * time.Minute

// Publish checks the archive body (a zip from `moon package`), stores it,
// records its index line and rebuilds the index (see UseIndex). The same bytes
// again succeed with Existed; other bytes for a published version are
// ErrConflict. Nothing is stored when the archive is refused.
func (r *Registry) Publish(ctx context.Context, body io.Reader) (Published, error) {
	if r.opts.ReadOnly {
		return Published{}, ErrReadOnly
	}
	f, size, sum, err := r.spool(body)
	if err != nil {
		return Published{}, err
	}
	defer f.Close()
	man, deps, err := InspectArchive(f, size)
	if err != nil {
		return Published{}, err
	}
	mv := man.Archive()
	switch owner := r.reserved(module.Owner(mv.Module)); {
	case owner == "":
		return Published{}, fmt.Errorf("%w: %s; publishing is open to the owners in [private] owners (%s)",
			ErrNotReserved, mv.Module, strings.Join(r.opts.Owners, ", "))
	case owner != module.Owner(mv.Module):
		return Published{}, fmt.Errorf("%w: %s; the reserved owner is spelled %s (names that differ only in case are one on macOS and Windows)",
			ErrNotReserved, mv.Module, owner)
	}
	if err := r.checkNames(ctx, mv); err != nil {
		return Published{}, err
	}
	if err := r.checkResolvable(ctx, deps); err != nil {
		return Published{}, err
	}
	pub := Published{Archive: mv, Checksum: sum}
	now := r.opts.Now().UTC()
	final := record{State: statePublished, Checksum: sum, UpdatedAt: now, Line: manifest.NewLine(man, deps, sum, now)}
	if err := checkRecordSize(final); err != nil {
		return pub, err
	}
	rec, etag, err := r.claim(ctx, mv, sum)
	if err != nil {
		return pub, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return pub, err
	}
	if rec.State == statePublished {
		// The same bytes, published before: make sure the archive is
		// still there (it is never evicted, but a store may lose it).
		pub.Existed = true
		if err := r.ensureArchive(ctx, mv, f, sum, size); err != nil {
			return pub, err
		}
		return pub, r.afterChange(ctx, mv)
	}
	if _, err := store.PutVerified(ctx, r.opts.Store, mv, f, store.Meta{SHA256: sum, Size: size}); err != nil {
		return pub, err
	}
	if err := r.swap(ctx, mv, final, etag); err != nil {
		return pub, err
	}
	return pub, r.afterChange(ctx, mv)
}

// checkNames refuses a module whose name differs only in case from a
// published one's (clients on macOS and Windows would keep both in one
// directory), and a version whose record, kept before build metadata was
// folded, holds a sibling (1.0.0 beside an old 1.0.0+x).
func (r *Registry) checkNames(ctx context.Context, mv module.Version) error {
	keys, err := r.opts.Records.List(ctx)
	if err != nil {
		return fmt.Errorf("list private modules: %w", err)
	}
	for _, key := range keys {
		other, err := module.ParseVersion(key)
		if err != nil {
			continue
		}
		switch {
		case other.Module != mv.Module && strings.EqualFold(other.Module, mv.Module):
			return fmt.Errorf("%w: %s differs only in case from the published %s (one name on macOS and Windows)", ErrConflict, mv.Module, other.Module)
		case other.Module == mv.Module && strings.Contains(other.Version, "+") && other.Version != mv.Version && recordKey(other) == recordKey(mv):
			// Only old keys keep build metadata; a new key's record says
			// its version (claim checks it).
			return fmt.Errorf("%w: %s is already published as %s; versions that differ only in build metadata are one version", ErrConflict, mv, other.Version)
		}
	}
	return nil
}

// checkResolvable refuses dependencies (name -> requirement) that no
// version in the served index satisfies.
func (r *Registry) checkResolvable(ctx context.Context, deps map[string]string) error {
	if r.index == nil {
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(deps)) {
		req, err := module.ParseRequirement(deps[name])
		if err != nil {
			return invalid("dependency %q: %v", name, err) // ParseManifest checked it already
		}
		versions, err := r.index.Versions(ctx, name)
		if err != nil {
			return fmt.Errorf("look up dependency %s: %w", name, err)
		}
		if !slices.ContainsFunc(versions, req.Matches) {
			return invalid("dependency %q: no version of it in this registry's index satisfies %q (has %d versions); publish it first or fix the requirement",
				name, deps[name], len(versions))
		}
	}
	return nil
}

// afterChange rebuilds the served index; its failure leaves the change
// stored (the next index sync serves it) and says so.
func (r *Registry) afterChange(ctx context.Context, mv module.Version) error {
	if r.index == nil {
		return nil
	}
	// The change is stored: finish the index even if the caller leaves
	// (a killed rebuild would leave lookups waiting for the next sync).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), afterChangeTimeout)
	defer cancel()
	if err := r.index.Recompose(ctx); err != nil {
		return fmt.Errorf("%w: %s is stored, but the served index is not updated yet (the next index sync does it; publishing again is safe): %w",
			ErrIndexPending, mv, err)
	}
	return nil
}

// afterChangeTimeout bounds the index rebuild after a change.
const afterChangeTimeout = 2 * time.Minute

// GuardFetcher returns next, except that a reserved owner's archive is
// never fetched from upstream: the index line of such a version is ours,
// so a miss means the store lost the archive, which upstream must not
// replace with its own bytes.
func (r *Registry) GuardFetcher(next cache.Fetcher) cache.Fetcher {
	if next == nil {
		return nil
	}
	return guardedFetcher{r: r, next: next}
}

type guardedFetcher struct {
	r    *Registry
	next cache.Fetcher
}

// Attempts passes on the upstream request count of the fetcher guarded.
func (g guardedFetcher) Attempts() int64 {
	if c, ok := g.next.(interface{ Attempts() int64 }); ok {
		return c.Attempts()
	}
	return 0
}

func (g guardedFetcher) Fetch(ctx context.Context, mv module.Version, sink func(context.Context, io.Reader, int64) error) error {
	if g.r.Owns(mv.Module) {
		return fmt.Errorf("%s is a private module, never fetched from upstream, and the store does not have its archive (publish it again)", mv)
	}
	return g.next.Fetch(ctx, mv, sink)
}

// ensureArchive stores the archive again if the store no longer has it.
func (r *Registry) ensureArchive(ctx context.Context, mv module.Version, f io.Reader, sum string, size int64) error {
	obj, err := r.opts.Store.Open(ctx, mv)
	if err == nil {
		stored := obj.Info().SHA256
		obj.Close()
		if stored == "" || stored == sum {
			return nil
		}
		// Other bytes under the published record (a publish taken over
		// while it was still writing): put the published ones back.
	} else if !errors.Is(err, store.ErrNotExist) {
		return err
	}
	_, err = store.PutVerified(ctx, r.opts.Store, mv, f, store.Meta{SHA256: sum, Size: size})
	return err
}

// spool copies body to an unlinked temporary file, hashing it, up to the
// size cap.
func (r *Registry) spool(body io.Reader) (*os.File, int64, string, error) {
	f, err := os.CreateTemp(r.opts.TempDir, "moonbit-registry-publish-*")
	if err != nil {
		return nil, 0, "", err
	}
	os.Remove(f.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(body, r.opts.MaxArchiveSize+1))
	if err != nil {
		f.Close()
		return nil, 0, "", fmt.Errorf("read the archive: %w", err)
	}
	if n > r.opts.MaxArchiveSize {
		f.Close()
		return nil, 0, "", fmt.Errorf("%w: over %d bytes (private.max_archive_size)", ErrTooLarge, r.opts.MaxArchiveSize)
	}
	if n == 0 {
		f.Close()
		return nil, 0, "", invalid("the archive is empty")
	}
	return f, n, hex.EncodeToString(h.Sum(nil)), nil
}

// claim takes mv's record for a publish of sum: a new pending record, a
// pending one of the same bytes (a publish that died, resumed), or a
// stale pending one of other bytes. It returns the record as found and
// the ETag to replace it with.
func (r *Registry) claim(ctx context.Context, mv module.Version, sum string) (record, string, error) {
	pending, err := json.Marshal(record{State: statePending, Checksum: sum, UpdatedAt: r.opts.Now().UTC()})
	if err != nil {
		return record{}, "", err
	}
	key, err := r.storedKey(ctx, mv)
	if err != nil {
		return record{}, "", err
	}
	for range 3 {
		etag, created, err := r.opts.Records.Create(ctx, key, pending)
		if err != nil {
			return record{}, "", err
		}
		if created {
			return record{State: statePending, Checksum: sum}, etag, nil
		}
		rec, etag, age, found, err := r.readRecord(ctx, mv)
		if err != nil {
			return record{}, "", err
		}
		if !found {
			continue // removed in between: create again
		}
		switch {
		case rec.State == statePublished && rec.Line.Version != mv.Version:
			return record{}, "", fmt.Errorf("%w: %s is already published as %s; versions that differ only in build metadata are one version",
				ErrConflict, mv, rec.Line.Version)
		case rec.State == statePublished && rec.Checksum == sum:
			return rec, etag, nil
		case rec.State == statePublished:
			return record{}, "", fmt.Errorf("%w: %s is already published with checksum %s, and this archive's is %s; publish a new version",
				ErrConflict, mv, rec.Checksum, sum)
		case rec.Checksum == sum:
			return rec, etag, nil
		case age < pendingTimeout:
			return record{}, "", fmt.Errorf("%w: another publish of %s with other bytes is under way", ErrConflict, mv)
		}
		newETag, swapped, err := r.opts.Records.Swap(ctx, key, pending, etag)
		if err != nil {
			return record{}, "", err
		}
		if swapped {
			return record{State: statePending, Checksum: sum}, newETag, nil
		}
	}
	return record{}, "", fmt.Errorf("%w: %s keeps changing under this publish", ErrConflict, mv)
}

func (r *Registry) swap(ctx context.Context, mv module.Version, rec record, etag string) error {
	body, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	key, err := r.storedKey(ctx, mv)
	if err != nil {
		return err
	}
	_, swapped, err := r.opts.Records.Swap(ctx, key, body, etag)
	if err != nil {
		return err
	}
	if swapped {
		return nil
	}
	// A retry of this very publish (the same bytes) may have finished it
	// first: then the version holds what was asked.
	now, _, _, found, err := r.readRecord(ctx, mv)
	if err != nil {
		return err
	}
	if found && now.State == statePublished && now.Checksum == rec.Checksum {
		return nil
	}
	return fmt.Errorf("%w: the record of %s changed during the publish", ErrConflict, mv)
}

// storedKey is the key mv's record is kept under: recordKey's, or for a
// version with build metadata published before versions were claimed
// without it, the whole version (one more Read, for such versions only).
func (r *Registry) storedKey(ctx context.Context, mv module.Version) (string, error) {
	key := recordKey(mv)
	if key == mv.String() {
		return key, nil
	}
	_, _, _, found, err := r.opts.Records.Read(ctx, mv.String())
	if err != nil {
		return "", err
	}
	if found {
		return mv.String(), nil
	}
	return key, nil
}

// readRecord reads mv's record; found is false when there is none. A record
// that does not parse is an error: it is ours, so it is damaged.
func (r *Registry) readRecord(ctx context.Context, mv module.Version) (rec record, etag string, age time.Duration, found bool, err error) {
	key, err := r.storedKey(ctx, mv)
	if err != nil {
		return record{}, "", 0, false, err
	}
	body, etag, age, found, err := r.opts.Records.Read(ctx, key)
	if err != nil || !found {
		return record{}, "", 0, found, err
	}
	if err := json.Unmarshal(body, &rec); err != nil {
		return record{}, "", 0, false, fmt.Errorf("the record of %s is damaged: %w", mv, err)
	}
	return rec, etag, age, true, nil
}

// maxRecordSize bounds a record as stored: every Records backend must
// read back what it wrote (the S3 store's small objects stop at 64 KiB).
// A real index line is well under 2 KiB; what makes one larger is a
// manifest stuffed with text.
const (
	maxRecordSize = 32 << 10
	maxReason     = 1 << 10
)

func checkRecordSize(rec record) error {
	body, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if len(body) > maxRecordSize-maxReason {
		return invalid("the index line would be %d bytes; at most %d are kept (shorten the description, keywords or other fields of moon.mod.json)",
			len(body), maxRecordSize-maxReason)
	}
	return nil
}

// Mark is a change of a published version's markers.
type Mark struct {
	// Deprecated, when set, becomes the version's "deprecated" reason
	// ("" removes it).
	Deprecated *string
	// Yanked, when set, becomes its "yanked".
	Yanked *bool
}

// SetMarks deprecates, yanks or restores a published version. The archive
// stays: clients that locked the version keep getting it.
func (r *Registry) SetMarks(ctx context.Context, mv module.Version, m Mark) error {
	if r.opts.ReadOnly {
		return ErrReadOnly
	}
	if err := mv.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if !r.Owns(mv.Module) {
		return fmt.Errorf("%w: %s", ErrNotReserved, mv.Module)
	}
	if m.Deprecated != nil && len(*m.Deprecated) > maxReason {
		return invalid("the deprecation reason is longer than %d bytes", maxReason)
	}
	for range 5 {
		rec, etag, _, found, err := r.readRecord(ctx, mv)
		if err != nil {
			return err
		}
		if !found || rec.State != statePublished || rec.Line.Version != mv.Version {
			return fmt.Errorf("%w: %s", ErrUnknown, mv)
		}
		if m.Deprecated != nil {
			rec.Line.Deprecated = *m.Deprecated
		}
		if m.Yanked != nil {
			rec.Line.Yanked = *m.Yanked
		}
		rec.UpdatedAt = r.opts.Now().UTC()
		next, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		key, err := r.storedKey(ctx, mv)
		if err != nil {
			return err
		}
		_, swapped, err := r.opts.Records.Swap(ctx, key, next, etag)
		if err != nil {
			return err
		}
		if swapped {
			return r.afterChange(ctx, mv)
		}
	}
	return fmt.Errorf("%w: the record of %s keeps changing", ErrConflict, mv)
}

// Files renders the private .index files, keyed by their path in the
// index tree ("user/<owner>/<name>.index"), and the time of the latest
// change among them: what the served index overlays on upstream's. Lines
// come in publish order, so each file only grows as upstream's do.
func (r *Registry) Files(ctx context.Context) (map[string][]byte, time.Time, error) {
	recs, err := r.published(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	sort.Slice(recs, func(i, j int) bool {
		a, b := recs[i].Line, recs[j].Line
		if a.CreatedAt != b.CreatedAt {
			return a.CreatedAt < b.CreatedAt
		}
		return module.Compare(a.Version, b.Version) < 0
	})
	var latest time.Time
	bufs := map[string]*bytes.Buffer{}
	for _, rec := range recs {
		line, err := json.Marshal(rec.Line)
		if err != nil {
			return nil, time.Time{}, err
		}
		p := module.IndexPath(rec.Line.Name)
		if bufs[p] == nil {
			bufs[p] = &bytes.Buffer{}
		}
		bufs[p].Write(line)
		bufs[p].WriteByte('\n')
		if rec.UpdatedAt.After(latest) {
			latest = rec.UpdatedAt
		}
	}
	files := make(map[string][]byte, len(bufs))
	for p, b := range bufs {
		files[p] = b.Bytes()
	}
	return files, latest, nil
}

// Versions lists the published private versions with their checksums.
func (r *Registry) Versions(ctx context.Context) (map[module.Version]string, error) {
	recs, err := r.published(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[module.Version]string, len(recs))
	for _, rec := range recs {
		out[module.Version{Module: rec.Line.Name, Version: rec.Line.Version}] = rec.Checksum
	}
	return out, nil
}

// published reads every finished record of a reserved owner. Records of
// an owner no longer reserved stay in the store but are not served.
func (r *Registry) published(ctx context.Context) ([]record, error) {
	keys, err := r.opts.Records.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list private modules: %w", err)
	}
	var out []record
	for _, key := range keys {
		mv, err := module.ParseVersion(key)
		if err != nil || !r.Owns(mv.Module) {
			continue
		}
		body, _, _, found, err := r.opts.Records.Read(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("read private module %s: %w", key, err)
		}
		var rec record
		if !found || json.Unmarshal(body, &rec) != nil || rec.State != statePublished ||
			!isKeyOf(key, module.Version{Module: rec.Line.Name, Version: rec.Line.Version}) {
			continue
		}
		out = append(out, rec)
	}
	return out, nil
}
