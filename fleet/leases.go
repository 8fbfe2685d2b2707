// Package fleet coordinates replicas that share one bucket, through
// objects in it and nothing else (no redis, no etcd): Leases make each
// archive be fetched from upstream once for the whole fleet, and IndexTip
// keeps one index tip that only moves forward, with a bundle of it for
// replicas that cannot reach upstream.
package fleet

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"moonbit-registry/cache"
	"moonbit-registry/store"
)

// Objects is what leases are made of: small objects written only with
// conditions (*s3.Objects).
type Objects interface {
	// Create writes key unless it exists (created is false then).
	Create(ctx context.Context, key string, body []byte) (etag string, created bool, err error)
	// Swap replaces key if it still has etag (swapped is false otherwise).
	Swap(ctx context.Context, key string, body []byte, etag string) (newETag string, swapped bool, err error)
	// Read returns key, its ETag and its age by the server's clock.
	Read(ctx context.Context, key string) (body []byte, etag string, age time.Duration, found bool, err error)
}

// Defaults for LeaseOptions.
const (
	DefaultLeaseTTL   = 30 * time.Second
	DefaultOutcomeTTL = 30 * time.Second
	DefaultPoll       = 200 * time.Millisecond
)

// LeaseOptions configures NewLeases.
type LeaseOptions struct {
	Objects Objects
	// Present reports whether the archive a key names is in the store
	// already: a waiter that sees it is done without taking the lease.
	Present func(ctx context.Context, key string) (bool, error)
	// TTL: a lease not renewed for this long (by the server's clock) is
	// taken over. Its holder renews it every TTL/3.
	TTL time.Duration
	// OutcomeTTL is how long a holder's "not found" or "checksum mismatch"
	// is left in the lease for others, instead of each asking upstream.
	OutcomeTTL time.Duration
	// Poll is the mean interval at which waiters look again (jittered).
	Poll time.Duration
	// MaxWait bounds one attempt, waiting for other replicas included
	// (cache.DefaultFetchTimeout by default). The attempt runs detached
	// from the requests waiting for it.
	MaxWait time.Duration
	// Holder names this replica in the leases it holds (host and pid by
	// default).
	Holder string
	Logger zerolog.Logger
}

// Leases is a cache.Coalescer for a fleet: within a replica, callers share
// one attempt per key (cache.Flights); across replicas, the attempt that
// creates the key's lease object runs the fetch, and the others wait,
// polling the store, until the archive is there or the outcome says it
// cannot be. A waiter never fails because a lease is busy: it waits until
// its own context ends.
type Leases struct {
	opts  LeaseOptions
	local cache.Flights
	stats LeaseStats
	log   zerolog.Logger
}

// LeaseStats counts what the leases did, for metrics.
type LeaseStats struct {
	Acquired  atomic.Int64 // leases taken (attempts this replica ran for the fleet)
	Waited    atomic.Int64 // attempts that waited for another replica
	TakenOver atomic.Int64 // expired leases taken over
	Outcomes  atomic.Int64 // failures answered from a lease's recorded outcome
}

// NewLeases builds Leases over opts.Objects.
func NewLeases(opts LeaseOptions) (*Leases, error) {
	if opts.Objects == nil {
		return nil, errors.New("fleet: LeaseOptions.Objects is required")
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultLeaseTTL
	}
	if opts.OutcomeTTL <= 0 {
		opts.OutcomeTTL = DefaultOutcomeTTL
	}
	if opts.Poll <= 0 {
		opts.Poll = DefaultPoll
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = cache.DefaultFetchTimeout
	}
	if opts.Holder == "" {
		host, _ := os.Hostname()
		opts.Holder = host + ":" + strconv.Itoa(os.Getpid())
	}
	return &Leases{opts: opts, log: opts.Logger.With().Str("component", "leases").Logger()}, nil
}

// Stats is the running count of what the leases did.
func (l *Leases) Stats() *LeaseStats { return &l.stats }

// lease is the body of a lease object.
type lease struct {
	Holder string `json:"holder"`
	// Token is new for every hold and Seq counts its writes: each write
	// changes the body, so its ETag, and a takeover's If-Match on the
	// version it judged stale fails if the holder renewed meanwhile.
	Token string `json:"token,omitempty"`
	Seq   int64  `json:"seq,omitempty"`
	// State is "" while the holder fetches; stateReleased once it is done
	// (the lease is free); stateNotFound or stateMismatch after a failure
	// others should not repeat.
	State   string `json:"state,omitempty"`
	Message string `json:"message,omitempty"`
}

// Lease states a holder records.
const (
	stateReleased = "released"
	stateNotFound = "not_found"
	stateMismatch = "checksum_mismatch"
)

// Do implements cache.Coalescer.
func (l *Leases) Do(ctx context.Context, key string, fn func() error) (bool, error) {
	return l.local.Do(ctx, key, func() error {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.opts.MaxWait)
		defer cancel()
		err := l.fleetDo(ctx, key, fn)
		if ctx.Err() != nil && err != nil && !errors.Is(err, cache.ErrUpstreamUnavailable) {
			err = fmt.Errorf("%w: archive %s: %w", cache.ErrUpstreamUnavailable, key, err)
		}
		return err
	})
}

// objectKey is the lease's key: the archive name, escaped so that it is
// one path segment below the leases prefix.
func objectKey(key string) string { return url.PathEscape(key) }

// opTimeout bounds one request to the bucket, so a hung one cannot hold an
// archive's flight for good.
func (l *Leases) opTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, max(l.opts.TTL/3, time.Second))
}

// fleetDo runs fn under key's lease, or waits for the replica that holds
// it, until ctx ends. Every pass of the loop reads the lease once and then
// acts or sleeps, except after losing a race to take it, where it reads
// again at once (at most a few times: each loss means another replica now
// holds it).
func (l *Leases) fleetDo(ctx context.Context, key string, fn func() error) error {
	okey := objectKey(key)
	waited, races := false, 0
	for {
		if races > maxTakeRaces {
			races = 0
			if err := l.sleep(ctx); err != nil {
				return err
			}
		}
		rctx, cancel := l.opTimeout(ctx)
		body, etag, age, found, err := l.opts.Objects.Read(rctx, okey)
		cancel()
		if err != nil {
			return l.storeTrouble(ctx, key, err)
		}
		var held lease
		if found && json.Unmarshal(body, &held) != nil {
			held = lease{} // unreadable: a lease in progress, expiring by age
		}
		failed := held.State == stateNotFound || held.State == stateMismatch
		switch {
		case !found || held.State == stateReleased ||
			age >= l.opts.TTL || (failed && age >= l.opts.OutcomeTTL):
			mine := l.newLease()
			wctx, cancel := l.opTimeout(ctx)
			var newETag string
			var taken bool
			if found {
				newETag, taken, err = l.opts.Objects.Swap(wctx, okey, l.body(mine), etag)
			} else {
				newETag, taken, err = l.opts.Objects.Create(wctx, okey, l.body(mine))
			}
			cancel()
			if err != nil {
				return l.storeTrouble(ctx, key, err)
			}
			if !taken {
				races++
				continue // another replica took it first: read it again
			}
			l.stats.Acquired.Add(1)
			if found && held.State == "" {
				l.stats.TakenOver.Add(1)
				l.log.Warn().Str("archive", key).Str("holder", held.Holder).Dur("age_ms", age).Msg("took over an expired lease")
			}
			return l.hold(ctx, key, okey, newETag, mine, fn)
		case failed:
			l.stats.Outcomes.Add(1)
			return outcomeError(key, held)
		}
		// A live lease of another replica: wait for its archive.
		if !waited {
			waited = true
			l.stats.Waited.Add(1)
		}
		if err := l.sleep(ctx); err != nil {
			return err
		}
		if l.opts.Present != nil {
			pctx, cancel := l.opTimeout(ctx) // a hung request must not hold the wait
			ok, err := l.opts.Present(pctx, key)
			cancel()
			if err == nil && ok {
				return nil
			}
		}
	}
}

// maxTakeRaces: after this many lost races to take a lease in a row the
// loop sleeps before reading it again.
const maxTakeRaces = 3

// newLease is a fresh body for this replica: a new token.
func (l *Leases) newLease() lease {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	return lease{Token: hex.EncodeToString(b[:])}
}

// hold runs fn while renewing the lease, then releases it (or leaves the
// failure in it when others should not repeat the attempt) with If-Match
// on the version it wrote last: a lease taken over meanwhile is left to
// its new holder.
func (l *Leases) hold(ctx context.Context, key, okey, etag string, mine lease, fn func() error) error {
	// Renewing and releasing outlive the caller's context: the fetch does.
	bg := context.WithoutCancel(ctx)
	stop := make(chan struct{})
	type last struct {
		etag string
		lost bool
		seq  int64
	}
	renewed := make(chan last, 1)
	go func() {
		tick := time.NewTicker(l.opts.TTL / 3)
		defer tick.Stop()
		cur := last{etag: etag, seq: mine.Seq}
		defer func() { renewed <- cur }()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			next := mine
			next.Seq = cur.seq + 1
			wctx, cancel := l.opTimeout(bg)
			newETag, swapped, err := l.opts.Objects.Swap(wctx, okey, l.body(next), cur.etag)
			cancel()
			switch {
			case err != nil:
				l.log.Warn().Err(err).Str("archive", key).Msg("lease renewal failed; retrying")
			case !swapped:
				l.log.Warn().Str("archive", key).Msg("lease taken over by another replica while fetching")
				cur.lost = true
				return
			default:
				cur.etag, cur.seq = newETag, next.Seq
			}
		}
	}()
	err := fn()
	close(stop)
	cur := <-renewed
	if cur.lost {
		return err // the lease is another replica's now
	}
	done := mine
	done.Seq = cur.seq + 1
	done.State = stateReleased
	if state := outcomeOf(err); state != "" {
		done.State, done.Message = state, err.Error()
	}
	wctx, cancel := l.opTimeout(bg)
	defer cancel()
	if _, _, serr := l.opts.Objects.Swap(wctx, okey, l.body(done), cur.etag); serr != nil {
		l.log.Warn().Err(serr).Str("archive", key).Str("state", done.State).Msg("cannot update the lease; it expires by itself")
	}
	return err
}

func (l *Leases) body(le lease) []byte {
	le.Holder = l.opts.Holder
	b, _ := json.Marshal(le) // strings and numbers only: cannot fail
	return b
}

// sleep waits about Poll, jittered so waiters spread out.
func (l *Leases) sleep(ctx context.Context) error {
	d := l.opts.Poll/2 + rand.N(l.opts.Poll)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// storeTrouble: the bucket did not answer a lease operation. The fetch is
// not attempted (without the lease every replica might), and the client
// may retry (503); a caller whose own wait ended gets that instead.
func (l *Leases) storeTrouble(ctx context.Context, key string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: archive %s: waiting for another replica's fetch: %w", cache.ErrUpstreamUnavailable, key, ctx.Err())
	}
	l.log.Warn().Err(err).Str("archive", key).Msg("lease: the shared store did not answer")
	return fmt.Errorf("%w: archive %s: lease: %w", store.ErrUnavailable, key, err)
}

// outcomeOf is what a failed fetch leaves for the others: only what
// upstream itself said (a version this replica's index lacks may be in
// another's).
func outcomeOf(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, cache.ErrUpstreamNotFound):
		return stateNotFound
	case errors.Is(err, store.ErrChecksumMismatch):
		return stateMismatch
	}
	return ""
}

// outcomeError is the error a recorded failure stands for.
func outcomeError(key string, le lease) error {
	sentinel := cache.ErrUpstreamNotFound
	if le.State == stateMismatch {
		sentinel = store.ErrChecksumMismatch
	}
	return fmt.Errorf("%w: %s (found by replica %s: %s)", sentinel, key, le.Holder, le.Message)
}
