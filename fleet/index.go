package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
)

// Blobs are larger objects written whole (index bundles) beside the small
// conditional ones (*s3.Objects).
type Blobs interface {
	PutFile(ctx context.Context, key, path string) error
	GetFile(ctx context.Context, key, path string) (found bool, err error)
	Remove(ctx context.Context, key string) error
}

// IndexTip is the index state replicas agree on (indexsync.Fleet): the
// object "tip" holds the fleet's commit and is only ever replaced with
// If-Match on the version read, so of two replicas moving it at once one
// wins and the other reads again; "bundles/<commit>.bundle" is a git
// bundle of it (all its history), stored before the tip names it, for
// replicas that cannot reach upstream.
type IndexTip struct {
	objects Objects
	blobs   Blobs
}

// NewIndexTip keeps the tip in objects and bundles in blobs (the same
// prefix of the bucket, as *s3.Objects is both).
func NewIndexTip(objects Objects, blobs Blobs) *IndexTip {
	return &IndexTip{objects: objects, blobs: blobs}
}

const tipKey = "tip"

type tipBody struct {
	Commit string `json:"commit"`
}

var commitID = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

// checkCommit refuses what is not a commit id before it reaches a key.
func checkCommit(commit string) error {
	if !commitID.MatchString(commit) {
		return errors.New("fleet: not a commit id: " + commit)
	}
	return nil
}

// Tip implements indexsync.Fleet.
func (t *IndexTip) Tip(ctx context.Context) (commit, version string, err error) {
	body, etag, _, found, err := t.objects.Read(ctx, tipKey)
	if err != nil || !found {
		return "", "", err
	}
	var tb tipBody
	if err := json.Unmarshal(body, &tb); err != nil || !commitID.MatchString(tb.Commit) {
		return "", "", fmt.Errorf("the fleet's index tip object is not a commit: %.100q", body)
	}
	return tb.Commit, etag, nil
}

// Advance implements indexsync.Fleet.
func (t *IndexTip) Advance(ctx context.Context, version, commit string) (bool, error) {
	if err := checkCommit(commit); err != nil {
		return false, err
	}
	body, _ := json.Marshal(tipBody{Commit: commit}) // a string: cannot fail
	if version == "" {
		_, created, err := t.objects.Create(ctx, tipKey, body)
		return created, err
	}
	_, swapped, err := t.objects.Swap(ctx, tipKey, body, version)
	return swapped, err
}

func bundleKey(commit string) string { return "bundles/" + commit + ".bundle" }

// PutBundle implements indexsync.Fleet.
func (t *IndexTip) PutBundle(ctx context.Context, commit, path string) error {
	if err := checkCommit(commit); err != nil {
		return err
	}
	return t.blobs.PutFile(ctx, bundleKey(commit), path)
}

// DropBundle implements indexsync.Fleet. A replica that read the tip a
// moment ago and wants this bundle now reads the tip again.
func (t *IndexTip) DropBundle(ctx context.Context, commit string) error {
	if err := checkCommit(commit); err != nil {
		return err
	}
	return t.blobs.Remove(ctx, bundleKey(commit))
}

// Bundle implements indexsync.Fleet.
func (t *IndexTip) Bundle(ctx context.Context, commit, dst string) (bool, error) {
	if err := checkCommit(commit); err != nil {
		return false, err
	}
	return t.blobs.GetFile(ctx, bundleKey(commit), dst)
}
