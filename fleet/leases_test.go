package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"moonbit-registry/cache"
	"moonbit-registry/internal/testsupport"
	"moonbit-registry/store/s3"
)

// bucketObjects opens the lease objects of a fresh prefix in a real S3
// server (versitygw).
func bucketObjects(t *testing.T) *s3.Objects {
	t.Helper()
	srv := testsupport.StartS3(t, "fleet")
	st, err := s3.New(context.Background(), s3.Options{Endpoint: srv.Endpoint, Bucket: "fleet", Region: srv.Region, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	return st.Objects("leases")
}

// replicas makes n Leases over the same objects, as n processes would.
func replicas(t *testing.T, objs Objects, n int, present func(context.Context, string) (bool, error), tweak func(*LeaseOptions)) []*Leases {
	t.Helper()
	var out []*Leases
	for i := range n {
		opts := LeaseOptions{Objects: objs, Present: present, TTL: 3 * time.Second, Poll: 50 * time.Millisecond, Holder: fmt.Sprintf("replica-%d", i), Logger: zerolog.Nop()}
		if tweak != nil {
			tweak(&opts)
		}
		l, err := NewLeases(opts)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	return out
}

// fakeArchive stands in for the archive a fetch stores.
type fakeArchive struct {
	stored  atomic.Bool
	fetches atomic.Int64
}

func (a *fakeArchive) present(context.Context, string) (bool, error) { return a.stored.Load(), nil }

// fetch is the work a lease holder does: it checks the store first, as
// the pipeline's fetch does, then "downloads" for a while.
func (a *fakeArchive) fetch(d time.Duration) func() error {
	return func() error {
		if a.stored.Load() {
			return nil
		}
		a.fetches.Add(1)
		time.Sleep(d)
		a.stored.Store(true)
		return nil
	}
}

func TestLeasesOneFetchForTheFleet(t *testing.T) {
	objs := bucketObjects(t)
	var a fakeArchive
	fleet := replicas(t, objs, 3, a.present, nil)
	const callers = 100
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := fleet[i%len(fleet)].Do(t.Context(), "moonbitlang/x@0.4.6", a.fetch(300*time.Millisecond))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Do: %v", err)
		}
	}
	if n := a.fetches.Load(); n != 1 {
		t.Errorf("%d fetches for %d callers on 3 replicas, want 1", n, callers)
	}
	var acquired, waited int64
	for _, l := range fleet {
		acquired += l.Stats().Acquired.Load()
		waited += l.Stats().Waited.Load()
	}
	if acquired < 1 || waited < 1 {
		t.Errorf("acquired %d, waited %d: want one holder and waiters", acquired, waited)
	}
	// The lease is released: free for whoever needs the archive next.
	body, _, _, found, err := objs.Read(t.Context(), objectKey("moonbitlang/x@0.4.6"))
	var le lease
	if err != nil || !found || json.Unmarshal(body, &le) != nil || le.State != stateReleased {
		t.Errorf("lease after the fetch: %s (found %v, %v), want released", body, found, err)
	}
}

// A holder that died (its lease no longer renewed) is taken over once the
// lease is older than the TTL by the server's clock; the waiter then runs
// the fetch itself.
func TestLeasesTakeOverADeadHolder(t *testing.T) {
	objs := bucketObjects(t)
	key := "moonbitlang/x@0.4.7"
	if _, created, err := objs.Create(t.Context(), objectKey(key), []byte(`{"holder":"killed"}`)); err != nil || !created {
		t.Fatalf("plant a dead lease: %v %v", created, err)
	}
	var a fakeArchive
	l := replicas(t, objs, 1, a.present, nil)[0]
	start := time.Now()
	if _, err := l.Do(t.Context(), key, a.fetch(0)); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if a.fetches.Load() != 1 || l.Stats().TakenOver.Load() != 1 {
		t.Errorf("fetches %d, takeovers %d; want 1 and 1", a.fetches.Load(), l.Stats().TakenOver.Load())
	}
	// Server clock with one-second resolution: between TTL-1s and TTL+2s.
	if took < 2*time.Second || took > 6*time.Second {
		t.Errorf("took over after %s, want about the 3s TTL", took)
	}
}

// A holder that learns "not found" leaves it in the lease: others get the
// same answer at once instead of asking upstream, until it expires.
func TestLeasesShareAFailure(t *testing.T) {
	objs := bucketObjects(t)
	key := "nobody/nothing@1.0.0"
	fleet := replicas(t, objs, 2, nil, func(o *LeaseOptions) { o.OutcomeTTL = 3 * time.Second })
	var fetches atomic.Int64
	notFound := func() error {
		fetches.Add(1)
		return fmt.Errorf("%w: upstream says so", cache.ErrUpstreamNotFound)
	}
	if _, err := fleet[0].Do(t.Context(), key, notFound); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("holder: %v", err)
	}
	for range 5 {
		if _, err := fleet[1].Do(t.Context(), key, notFound); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("other replica: %v, want ErrNotFound from the lease", err)
		}
	}
	if n := fetches.Load(); n != 1 {
		t.Errorf("upstream asked %d times, want 1", n)
	}
	time.Sleep(4 * time.Second) // the outcome expires
	if _, err := fleet[1].Do(t.Context(), key, notFound); !errors.Is(err, cache.ErrNotFound) || fetches.Load() != 2 {
		t.Errorf("after the outcome expired: %v, %d fetches; want a fresh attempt", err, fetches.Load())
	}
}

// A version missing from one replica's index says nothing about the
// others' (theirs may be newer): it is not left in the lease.
func TestLeasesKeepLocalNotFoundLocal(t *testing.T) {
	objs := bucketObjects(t)
	key := "fresh/module@1.0.0"
	fleet := replicas(t, objs, 2, nil, nil)
	var fetches atomic.Int64
	notInMyIndex := func() error {
		fetches.Add(1)
		return fmt.Errorf("%w: not in this replica's index", cache.ErrNotFound)
	}
	for _, l := range fleet {
		if _, err := l.Do(t.Context(), key, notInMyIndex); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("Do: %v", err)
		}
	}
	if n := fetches.Load(); n != 2 {
		t.Errorf("%d attempts, want each replica's own (2)", n)
	}
}

// A holder whose lease was taken over meanwhile (it stalled past the TTL)
// leaves the lease to its new holder when it finishes.
func TestLeasesHolderDoesNotReleaseAnothersLease(t *testing.T) {
	objs := bucketObjects(t)
	key := "moonbitlang/x@0.4.9"
	l := replicas(t, objs, 1, nil, nil)[0]
	release := make(chan struct{})
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := l.Do(t.Context(), key, func() error { close(started); <-release; return nil })
		done <- err
	}()
	<-started
	// Another replica takes the lease over.
	_, etag, _, found, err := objs.Read(t.Context(), objectKey(key))
	if err != nil || !found {
		t.Fatalf("read the lease: %v %v", found, err)
	}
	if _, swapped, err := objs.Swap(t.Context(), objectKey(key), []byte(`{"holder":"other","token":"other"}`), etag); err != nil || !swapped {
		t.Fatalf("take over: %v %v", swapped, err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	body, _, _, _, err := objs.Read(t.Context(), objectKey(key))
	if err != nil || string(body) != `{"holder":"other","token":"other"}` {
		t.Errorf("lease after the old holder finished: %s, %v; want the new holder's, untouched", body, err)
	}
}

// A waiter whose context ends stops waiting with that error; it never
// fails because the lease is busy.
func TestLeasesWaiterContext(t *testing.T) {
	objs := bucketObjects(t)
	key := "moonbitlang/x@0.4.8"
	if _, _, err := objs.Create(t.Context(), objectKey(key), []byte(`{"holder":"slow"}`)); err != nil {
		t.Fatal(err)
	}
	l := replicas(t, objs, 1, nil, func(o *LeaseOptions) { o.TTL = time.Hour })[0]
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	_, err := l.Do(ctx, key, func() error { t.Error("ran while another replica holds the lease"); return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Do = %v, want the caller's deadline", err)
	}
}
