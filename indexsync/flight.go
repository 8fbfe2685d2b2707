package indexsync

import (
	"context"
	"errors"
	"sync"
)

// flight is one sync run shared by every Sync caller that arrives while it
// runs. Unlike a plain single-flight call it counts its waiters, so a run
// nobody waits for any more (Run stopping, every requester gone) is
// cancelled and its git killed instead of running on unobserved, while one
// caller giving up never cancels the run for the others.
type flight struct {
	cancel  context.CancelFunc
	waiters int // guarded by flights.mu
	done    chan struct{}
	changes Changes
	err     error
}

// flights runs one sync at a time for every caller that asks meanwhile.
type flights struct {
	run     func(ctx context.Context) (Changes, error)
	mu      sync.Mutex
	current *flight // the sync running now
}

// errAbandoned is the cause of a run cancelled because no caller waited.
var errAbandoned = errors.New("sync abandoned: no caller waits for it")

// start joins the running sync or starts one, and registers the caller
// as a waiter; every start must be matched by one wait.
func (fs *flights) start(ctx context.Context) *flight {
	fs.mu.Lock()
	for fs.current != nil && fs.current.waiters == 0 {
		// An abandoned run is being cancelled: joining it would only return
		// its cancellation. Let it stop (it is quick: git is killed, a lock
		// wait ends), then start afresh.
		f := fs.current
		fs.mu.Unlock()
		<-f.done
		fs.mu.Lock()
	}
	defer fs.mu.Unlock()
	if f := fs.current; f != nil {
		f.waiters++
		return f
	}
	// The run keeps the first caller's values (logging, tracing) but not
	// its cancellation: that is decided by the waiter count.
	runCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	f := &flight{cancel: func() { cancel(errAbandoned) }, waiters: 1, done: make(chan struct{})}
	fs.current = f
	go func() {
		f.changes, f.err = fs.run(runCtx)
		fs.mu.Lock()
		fs.current = nil
		fs.mu.Unlock()
		cancel(nil)
		close(f.done)
	}()
	return f
}

// wait returns the run's result, or ctx's error if ctx ends first; the last
// waiter to leave cancels the run.
func (fs *flights) wait(ctx context.Context, f *flight) (Changes, error) {
	select {
	case <-f.done:
		return f.changes, f.err
	case <-ctx.Done():
	}
	fs.mu.Lock()
	f.waiters--
	abandoned := f.waiters == 0
	fs.mu.Unlock()
	if abandoned {
		f.cancel()
	}
	return Changes{}, ctx.Err()
}

// waitIdle blocks until the sync running now, if any, has finished. Run
// uses it so that it returns only after a sync it abandoned has stopped.
func (fs *flights) waitIdle() {
	fs.mu.Lock()
	f := fs.current
	fs.mu.Unlock()
	if f != nil {
		<-f.done
	}
}
