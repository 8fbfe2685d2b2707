package web

import (
	"sync"
	"time"
)

// Window turns cumulative counters into "over the last hour": it keeps a
// sample a minute (61 at most) and subtracts the one from an hour ago, or
// the first one when the process is younger.
type Window struct {
	mu      sync.Mutex
	samples []sample // oldest first
}

type sample struct {
	at time.Time
	c  Counts
}

// maxSamples covers an hour of one-a-minute samples.
const maxSamples = 61

// Sample records the counters' values at now.
func (w *Window) Sample(now time.Time, c Counts) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.samples = append(w.samples, sample{now, c})
	if len(w.samples) > maxSamples {
		w.samples = w.samples[len(w.samples)-maxSamples:]
	}
}

// LastHour is how much cur grew since the newest sample at least an hour
// old (or the oldest sample there is).
func (w *Window) LastHour(now time.Time, cur Counts) Counts {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.samples) == 0 {
		return cur
	}
	base := w.samples[0]
	for _, s := range w.samples {
		if now.Sub(s.at) < time.Hour {
			break
		}
		base = s
	}
	return Counts{Hits: cur.Hits - base.c.Hits, Misses: cur.Misses - base.c.Misses, Fetches: cur.Fetches - base.c.Fetches}
}
