package indexsync

import (
	"context"
	"sync"
	"time"
)

// state is the mirror's commit and its record of syncs: written by the
// syncing side, read by lookups, the server and metrics. It is safe for
// concurrent use.
type state struct {
	mu     sync.Mutex
	status Status
	// served is closed once there is a commit to serve.
	served     chan struct{}
	servedOnce sync.Once
}

func newState() *state { return &state{served: make(chan struct{})} }

func (s *state) get() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func (s *state) commit() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status.Commit
}

// setCommit records where main is; a commit once set makes the mirror
// servable for good.
func (s *state) setCommit(c string) {
	s.mu.Lock()
	s.status.Commit = c
	s.mu.Unlock()
	if c != "" {
		s.servedOnce.Do(func() { close(s.served) })
	}
}

// waitServed returns once there is a commit to serve, or with ctx's error.
func (s *state) waitServed(ctx context.Context) error {
	select {
	case <-s.served:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// recordSync counts one finished sync attempt; err is nil when it
// succeeded.
func (s *state) recordSync(now time.Time, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &s.status
	st.Syncs++
	st.LastSync = now
	st.LastError = err
	st.NextTry = time.Time{}
	if err != nil {
		st.Failures++
		if st.Streak == 0 {
			st.FailingSince = now
		}
		st.Streak++
		return
	}
	st.LastSuccess = now
	st.Streak, st.FailingSince = 0, time.Time{}
}

// retryAt records when Run tries again after a failure.
func (s *state) retryAt(t time.Time) {
	s.mu.Lock()
	s.status.NextTry = t
	s.mu.Unlock()
}
