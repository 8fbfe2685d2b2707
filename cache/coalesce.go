package cache

import (
	"context"
	"fmt"
	"sync/atomic"

	"golang.org/x/sync/singleflight"
)

// Flights is the in-process Coalescer: concurrent calls with one key share
// one run (singleflight).
type Flights struct {
	g singleflight.Group
}

// Do implements Coalescer.
func (f *Flights) Do(ctx context.Context, key string, fn func() error) (waited bool, err error) {
	var led atomic.Bool // set by the leader's run, which may still be going
	ch := f.g.DoChan(key, func() (any, error) {
		led.Store(true)
		return nil, fn()
	})
	select {
	case res := <-ch:
		return !led.Load(), res.Err
	case <-ctx.Done():
		return !led.Load(), fmt.Errorf("waiting for %s: %w", key, context.Cause(ctx))
	}
}
