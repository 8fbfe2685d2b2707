package indexsync

import (
	"context"
	"errors"
)

// flight is one sync run shared by every Sync caller that arrives while it
// runs. Unlike a plain single-flight call it counts its waiters, so a run
// nobody waits for any more (Run stopping, every requester gone) is
// cancelled and its git killed instead of running on unobserved, while one
// caller giving up never cancels the run for the others.
type flight struct {
	cancel  context.CancelFunc
	waiters int // guarded by Mirror.flightMu
	done    chan struct{}
	changes Changes
	err     error
}

// errAbandoned is the cause of a run cancelled because no caller waited.
var errAbandoned = errors.New("sync abandoned: no caller waits for it")

// startSync joins the running sync or starts one, and registers the caller
// as a waiter; every startSync must be matched by one wait.
func (m *Mirror) startSync(ctx context.Context) *flight {
	m.flightMu.Lock()
	for m.current != nil && m.current.waiters == 0 {
		// An abandoned run is being cancelled: joining it would only return
		// its cancellation. Let it stop (it is quick: git is killed, a lock
		// wait ends), then start afresh.
		f := m.current
		m.flightMu.Unlock()
		<-f.done
		m.flightMu.Lock()
	}
	defer m.flightMu.Unlock()
	if f := m.current; f != nil {
		f.waiters++
		return f
	}
	// The run keeps the first caller's values (logging, tracing) but not
	// its cancellation: that is decided by the waiter count.
	runCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	f := &flight{cancel: func() { cancel(errAbandoned) }, waiters: 1, done: make(chan struct{})}
	m.current = f
	go func() {
		f.changes, f.err = m.syncOnce(runCtx)
		m.flightMu.Lock()
		m.current = nil
		m.flightMu.Unlock()
		cancel(nil)
		close(f.done)
	}()
	return f
}

// wait returns the run's result, or ctx's error if ctx ends first; the last
// waiter to leave cancels the run.
func (m *Mirror) wait(ctx context.Context, f *flight) (Changes, error) {
	select {
	case <-f.done:
		return f.changes, f.err
	case <-ctx.Done():
	}
	m.flightMu.Lock()
	f.waiters--
	abandoned := f.waiters == 0
	m.flightMu.Unlock()
	if abandoned {
		f.cancel()
	}
	return Changes{}, ctx.Err()
}

// waitIdle blocks until the sync running now, if any, has finished. Run
// uses it so that it returns only after a sync it abandoned has stopped.
func (m *Mirror) waitIdle() {
	m.flightMu.Lock()
	f := m.current
	m.flightMu.Unlock()
	if f != nil {
		<-f.done
	}
}
