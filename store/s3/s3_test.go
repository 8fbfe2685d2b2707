package s3

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"moonbit-registry/internal/testsupport"
	"moonbit-registry/store/storetest"
)

const testBucket = "registry"

// TestCompliance runs the store contract against a real S3 server
// (versitygw), each subtest under a prefix of its own in one bucket.
func TestCompliance(t *testing.T) {
	srv := testsupport.StartS3(t, testBucket)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		prefix := fmt.Sprintf("t%d/", n.Add(1))
		s := newTestStore(t, srv, prefix)
		return storetest.Harness{Store: s, AddStray: func(t *testing.T) {
			// Objects beside the archives that are not archives.
			for _, key := range []string{"packages/moonbitlang/notes.txt", "packages/walk/m1/sub/0.1.0.zip.sha256", "leases/walk/m1/0.1.0", "packages/nomodule.zip"} {
				p := srv.ObjectFile(testBucket, prefix+key)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}}
	})
}

func newTestStore(t *testing.T, srv *testsupport.S3Server, prefix string) *Store {
	t.Helper()
	s, err := New(context.Background(), Options{
		Endpoint: srv.Endpoint, Bucket: testBucket, Prefix: prefix, Region: srv.Region, PathStyle: true,
		TempDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
