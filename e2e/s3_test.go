package e2e

import (
	"bytes"
	"net/http"
	"os"
	"strings"
	"testing"

	"moonbit-registry/internal/testsupport"
	"moonbit-registry/internal/testupstream"
)

const s3Bucket = "registry"

// s3Env points every registry process of the test at srv's bucket under
// prefix (the registry reads the store settings and AWS credentials from
// the environment, which StartS3 set).
func s3Env(t *testing.T, srv *testsupport.S3Server, prefix string) {
	t.Helper()
	for k, v := range map[string]string{
		"MOONBIT_REGISTRY_STORE_BACKEND":       "s3",
		"MOONBIT_REGISTRY_STORE_S3_ENDPOINT":   srv.Endpoint,
		"MOONBIT_REGISTRY_STORE_S3_BUCKET":     s3Bucket,
		"MOONBIT_REGISTRY_STORE_S3_PREFIX":     prefix,
		"MOONBIT_REGISTRY_STORE_S3_PATH_STYLE": "true",
	} {
		t.Setenv(k, v)
	}
}

// TestS3StoreThroughBinary: with store.backend = "s3" a miss is fetched
// once and published to the bucket; another replica on the same bucket
// serves it without asking upstream, also with upstream down; verify
// checks the bucket.
func TestS3StoreThroughBinary(t *testing.T) {
	ctx := t.Context()
	srv := testsupport.StartS3(t, s3Bucket)
	s3Env(t, srv, "reg/")
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{testupstream.EveryVersion(cliModule)}})
	versions := up.Index.Versions(cliModule)

	first := startRegistry(t, registryOptions{UpstreamURL: up.URL()})
	c := newMoonClient(t, first.URL)
	if err := c.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}
	for _, v := range versions {
		if _, err := c.Download(ctx, cliModule, v); err != nil {
			t.Fatalf("download %s: %v", v, err)
		}
		// The object in the bucket is the archive, byte for byte.
		stored, err := os.ReadFile(srv.ObjectFile(s3Bucket, "reg/packages/"+cliModule+"/"+v+".zip"))
		if err != nil || !bytes.Equal(stored, up.Downloads.Archive(cliModule, v)) {
			t.Errorf("%s in the bucket: %d bytes, %v", v, len(stored), err)
		}
	}
	if entries, _ := os.ReadDir(first.Root + "/data/packages"); len(entries) != 0 {
		t.Errorf("the local archive directory was used: %d entries", len(entries))
	}
	before := arcCounts(up)

	second := startRegistry(t, registryOptions{UpstreamURL: up.URL()})
	c2 := newMoonClient(t, second.URL)
	if err := c2.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if err := up.Down(); err != nil {
		t.Fatal(err)
	}
	for _, v := range versions {
		if body, err := c2.Download(ctx, cliModule, v); err != nil || !bytes.Equal(body, up.Downloads.Archive(cliModule, v)) {
			t.Errorf("second replica, upstream down, %s: %v", v, err)
		}
	}
	if after := arcCounts(up); !arcEqualCounts(before, after) {
		t.Errorf("the second replica asked upstream for archives: %v, before %v", after, before)
	}

	first.Stop(t)
	stdout, stderr, code := runRegistry(t, first.Root, up.URL(), "verify", cliModule)
	if want := "checked 2 archives, 0 problems"; code != 0 || !strings.Contains(stdout, want) {
		t.Errorf("verify on the bucket: exit %d, want 0 and %q\n%s\n%s", code, want, stdout, stderr)
	}
}

// TestS3StartupErrors: a bucket that does not exist, credentials the
// server refuses, and a size limit on a shared bucket stop serve with a
// message naming what to fix.
func TestS3StartupErrors(t *testing.T) {
	srv := testsupport.StartS3(t, s3Bucket)
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"missing bucket", map[string]string{"MOONBIT_REGISTRY_STORE_S3_BUCKET": "nope"}, []string{`bucket "nope"`, srv.Endpoint, "does not exist"}},
		{"bad credentials", map[string]string{"AWS_SECRET_ACCESS_KEY": "wrong"}, []string{`bucket "registry"`, srv.Endpoint, "credentials"}},
		{"size limit", map[string]string{"MOONBIT_REGISTRY_CACHE_MAX_SIZE": "1GiB"}, []string{"cache.max_size", "lifecycle"}},
		// The EC2 metadata service stays off (StartS3 set
		// AWS_EC2_METADATA_DISABLED): the search ends on this machine.
		{"no credentials", map[string]string{"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}, []string{"no AWS credentials", "AWS_ACCESS_KEY_ID", "AWS_PROFILE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s3Env(t, srv, "")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			stdout, stderr, code := runRegistry(t, t.TempDir(), "", "serve", "--listen", "127.0.0.1:0")
			if code == 0 {
				t.Fatalf("serve started\n%s", stdout)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, stderr)
				}
			}
		})
	}
}

// TestS3Redirect: with store.s3.redirect the archive request is answered
// with a redirect to a signed URL of the bucket, once the archive is
// there; a client that follows it (moon does) gets the archive's bytes
// from the store itself.
func TestS3Redirect(t *testing.T) {
	ctx := t.Context()
	srv := testsupport.StartS3(t, s3Bucket)
	s3Env(t, srv, "")
	t.Setenv("MOONBIT_REGISTRY_STORE_S3_REDIRECT", "true")
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{testupstream.EveryVersion(cliModule)}})
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL()})
	c := newMoonClient(t, reg.URL)
	if err := c.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}
	v := up.Index.Versions(cliModule)[0]
	res := arcFetch(t, http.MethodGet, c.archiveURL(cliModule, v), nil) // redirects not followed
	if loc := res.header.Get("Location"); res.status != http.StatusTemporaryRedirect || !strings.HasPrefix(loc, srv.Endpoint+"/") || !strings.Contains(loc, "X-Amz-Signature=") {
		t.Fatalf("archive request: %d, Location %q; want 307 to a signed URL of %s", res.status, loc, srv.Endpoint)
	}
	if body, err := c.Download(ctx, cliModule, v); err != nil || !bytes.Equal(body, up.Downloads.Archive(cliModule, v)) {
		t.Errorf("following the redirect: %v", err)
	}
	if n := up.Count(arcUpstreamPath(cliModule, v)); n != 1 {
		t.Errorf("upstream asked %d times, want 1", n)
	}
}
