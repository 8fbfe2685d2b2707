package s3

import (
	"fmt"
	"sync/atomic"
	"testing"

	"moonbit-registry/internal/testsupport"
	"moonbit-registry/store"
	"moonbit-registry/store/recordstest"
)

// TestRecordsCompliance runs the private records' contract on Objects
// against a real S3 server (versitygw), each subtest under a store prefix
// of its own.
func TestRecordsCompliance(t *testing.T) {
	srv := testsupport.StartS3(t, testBucket)
	var n atomic.Int64
	recordstest.Run(t, func(t *testing.T) store.Records {
		s := newTestStore(t, srv, fmt.Sprintf("r%d/", n.Add(1)))
		return s.Objects("private")
	})
}

// Objects of one name list only their own keys: not the archives beside
// them, nor the objects of another name.
func TestObjectsListOnlyTheirOwn(t *testing.T) {
	srv := testsupport.StartS3(t, testBucket)
	s := newTestStore(t, srv, "own/")
	mine, other, longer := s.Objects("private"), s.Objects("leases"), s.Objects("private2")
	ctx := t.Context()
	for _, c := range []struct {
		o   *Objects
		key string
	}{{mine, "acme/lib@1.0.0"}, {other, "acme/lib@1.0.0"}, {other, "x"}, {longer, "acme/z@1.0.0"}} {
		if _, created, err := c.o.Create(ctx, c.key, []byte("{}")); err != nil || !created {
			t.Fatalf("Create(%s) = %v, %v", c.key, created, err)
		}
	}
	keys, err := mine.List(ctx)
	if err != nil || len(keys) != 1 || keys[0] != "acme/lib@1.0.0" {
		t.Errorf("List = %q, %v; want only acme/lib@1.0.0", keys, err)
	}
}
