package web

import (
	"testing"
	"time"
)

func TestWindowLastHour(t *testing.T) {
	start := time.Unix(1_000_000, 0)
	var w Window
	w.Sample(start, Counts{})
	for m := 1; m <= 90; m++ { // 90 minutes, 10 hits a minute
		w.Sample(start.Add(time.Duration(m)*time.Minute), Counts{Hits: int64(10 * m)})
	}
	now := start.Add(90 * time.Minute)
	if got := w.LastHour(now, Counts{Hits: 900}); got.Hits != 600 {
		t.Errorf("after 90 minutes: %d hits in the last hour, want 600", got.Hits)
	}
	var young Window
	young.Sample(start, Counts{})
	if got := young.LastHour(start.Add(10*time.Minute), Counts{Hits: 7, Misses: 2}); got.Hits != 7 || got.Misses != 2 {
		t.Errorf("a young process: %+v, want everything since start", got)
	}
}
