package cache

import (
	"context"
	"fmt"

	"golang.org/x/sync/singleflight"
)

// Flights is the in-process Coalescer: concurrent calls with one key share
// one run (singleflight).
type Flights struct {
	g singleflight.Group
}

// Do implements Coalescer.
func (f *Flights) Do(ctx context.Context, key string, fn func() error) (waited bool, err error) {
	led := false // set by the leader's run; read after the result arrives
	ch := f.g.DoChan(key, func() (any, error) {
		led = true
		return nil, fn()
	})
	select {
	case res := <-ch:
		return !led, res.Err
	case <-ctx.Done():
		return !led, fmt.Errorf("waiting for %s: %w", key, context.Cause(ctx))
	}
}
