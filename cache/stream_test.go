package cache_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"moonbit-registry/module"
)

// TestStreamCutThenRetried: upstream cuts the first attempt halfway; the
// fetch retries and stores the archive, while a request that followed the
// cut attempt ends with an error, never with a short or mixed archive.
func TestStreamCutThenRetried(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, nil)
	mv := module.Version{Module: "stream/cut", Version: "1.0.0"}
	want := env.publish(mv)
	env.up.queue(cutBody(false))
	obj, stream, _, err := env.cache.GetStream(ctx, mv)
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	if stream != nil {
		got, err = io.ReadAll(stream)
		stream.Close()
		if err == nil && !bytes.Equal(got, want) {
			t.Fatalf("the stream ended cleanly with %d wrong bytes", len(got))
		}
	} else {
		got, err = io.ReadAll(obj)
		obj.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("from the store: %d bytes, %v", len(got), err)
		}
	}
	// Either way the archive is stored, whole, after two requests (Get
	// may still wait for the retry to finish).
	obj, _, err = env.cache.Get(ctx, mv)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if b, _ := io.ReadAll(obj); !bytes.Equal(b, want) {
		t.Fatalf("afterwards: %d bytes", len(b))
	}
	if n := env.up.requests.Load(); n != 2 {
		t.Errorf("upstream requests = %d, want 2", n)
	}
}

// TestStreamOfflineAndHit: without a fetcher, and for a stored archive,
// GetStream answers with the stored object.
func TestStreamOfflineAndHit(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, nil)
	mv := module.Version{Module: "stream/hit", Version: "1.0.0"}
	want := env.publish(mv)
	if _, err := env.cache.Ensure(ctx, mv); err != nil {
		t.Fatal(err)
	}
	obj, stream, outcome, err := env.cache.GetStream(ctx, mv)
	if err != nil || stream != nil || outcome != "hit" {
		t.Fatalf("GetStream of a stored archive: %v %v %s", stream, err, outcome)
	}
	b, _ := io.ReadAll(obj)
	obj.Close()
	if !bytes.Equal(b, want) {
		t.Fatal("wrong bytes")
	}
}

// TestStreamRetryWithOtherBytes: after a cut, the retry sends other
// bytes: the request that followed ends with an error, never with a
// mixed archive.
func TestStreamRetryWithOtherBytes(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, nil)
	mv := module.Version{Module: "stream/mixed", Version: "1.0.0"}
	env.publish(mv)
	env.up.queue(cutBody(false), wrongBytes)
	obj, stream, _, err := env.cache.GetStream(ctx, mv)
	if err == nil && stream != nil {
		_, err = io.ReadAll(stream)
		stream.Close()
	} else if obj != nil {
		obj.Close()
		t.Fatal("a mixed or wrong archive was served from the store")
	}
	if err == nil {
		t.Fatal("the request ended without an error")
	}
	if env.cache.Cached(ctx, mv) {
		t.Error("wrong bytes were stored")
	}
}
