package indexsync

import (
	"context"
	"time"
)

// firstRetry is the first wait after a failed sync in Run; it doubles on
// each further failure, up to Interval.
const firstRetry = time.Second

// Run syncs at once and then every Interval until ctx is done. A failed
// sync is logged and retried with exponential backoff capped at Interval;
// Run never gives up on errors. When ctx ends during a sync that nobody
// else waits for, that sync's git is killed and Run returns once it has
// stopped, so no git outlives Run.
func (m *Mirror) Run(ctx context.Context) {
	m.running.Store(true)
	defer m.running.Store(false)
	backoff := min(firstRetry, m.opts.Interval)
	for {
		wait := m.opts.Interval
		if _, err := m.Sync(ctx); err != nil {
			if ctx.Err() != nil {
				m.syncs.waitIdle()
				return
			}
			// Sync already logged the cause.
			wait = backoff
			backoff = min(2*backoff, m.opts.Interval)
			m.state.retryAt(time.Now().Add(wait))
			m.log.Warn().Dur("retry_in_ms", wait).Msg("index sync will be retried")
		} else {
			backoff = min(firstRetry, m.opts.Interval)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// RequestRefresh syncs now unless a sync finished less than
// RefreshMinInterval ago, in which case it returns that sync's error (nil
// if it succeeded) at once. A call while a sync is running waits for that
// sync instead of starting another. It is meant for a client asking for a
// version the mirror does not know yet: a flood of such requests costs at
// most one upstream fetch per RefreshMinInterval.
func (m *Mirror) RequestRefresh(ctx context.Context) error {
	// The check and the start happen under refreshMu, and a sync records
	// LastSync before its flight ends, so two callers can never both see
	// an expired window and start two syncs one after the other.
	m.refreshMu.Lock()
	st := m.Status()
	if !st.LastSync.IsZero() && time.Since(st.LastSync) < m.opts.RefreshMinInterval {
		m.refreshMu.Unlock()
		return st.LastError
	}
	ch := m.syncs.start(ctx)
	m.refreshMu.Unlock()
	_, err := m.syncs.wait(ctx, ch)
	return err
}

// Close waits until no sync of this Mirror runs any more. A sync that
// nobody waits for has been cancelled and ends quickly; call Close before
// the process exits, so no git it started outlives it (git runs in its own
// process group and would not see the terminal's signal).
func (m *Mirror) Close() {
	m.syncs.waitIdle()
}
