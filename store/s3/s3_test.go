package s3

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// TestNewWithoutCredentials: with no credentials anywhere (and the EC2
// metadata service off, as in every test), New fails at once saying what
// to set, without contacting the endpoint.
func TestNewWithoutCredentials(t *testing.T) {
	none := filepath.Join(t.TempDir(), "none")
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_CONFIG_FILE", none)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", none)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	// Nothing listens here: an attempt to reach the bucket would say so.
	_, err := New(t.Context(), Options{Endpoint: "http://127.0.0.1:1", Bucket: "b", Region: "us-east-1", PathStyle: true})
	if !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("New = %v, want ErrNoCredentials", err)
	}
	for _, s := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %s", err, s)
		}
	}
	if strings.Contains(err.Error(), "\n") || len(err.Error()) > 600 {
		t.Errorf("error is not one short line: %q", err)
	}
}
