package proxy

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"
)

// DefaultNotFoundTTL is how long an upstream 404 on a pass-through route
// is remembered (cache.not_found_ttl's default).
const DefaultNotFoundTTL = time.Minute

// maxNotFoundBytes bounds the memory of remembered 404s (their targets'
// lengths); hostile clients can ask for any number of long paths.
const maxNotFoundBytes = 4 << 20

// errKnownNotFound: upstream said 404 for the target within the TTL.
var errKnownNotFound = errors.New("upstream said not found a moment ago")

// notFoundCache remembers upstream 404s on pass-through routes for a short
// time, and lets one request per target ask upstream while the others wait
// to learn its status: a build farm asking a thousand times at once for an
// asset that does not exist costs upstream one request per TTL. Requests
// for a target that exists wait only until the first one has upstream's
// status line, then go on their own.
type notFoundCache struct {
	ttl time.Duration // 0 disables the cache (nothing is remembered or awaited)
	now func() time.Time

	mu     sync.Mutex
	until  map[string]time.Time     // target -> when its 404 is forgotten
	bytes  int                      // the lengths of until's keys
	asking map[string]chan struct{} // target -> closed once its status is known
}

func newNotFoundCache(ttl time.Duration) *notFoundCache {
	return &notFoundCache{ttl: ttl, now: time.Now, until: map[string]time.Time{}, asking: map[string]chan struct{}{}}
}

// known reports whether upstream said 404 for target within the TTL.
func (c *notFoundCache) known(target string) bool {
	if c.ttl <= 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.knownLocked(target)
}

func (c *notFoundCache) knownLocked(target string) bool {
	t, ok := c.until[target]
	if ok && !c.now().Before(t) {
		c.forgetLocked(target)
		return false
	}
	return ok
}

// ask is called before asking upstream for target. If another request is
// asking already, it waits for that one's status: errKnownNotFound if it
// was 404, or go ahead (with a no-op done) otherwise. Else the caller is
// the one asking, and must call done with upstream's status (0 for no
// answer) as soon as it has it; later calls of done do nothing.
func (c *notFoundCache) ask(ctx context.Context, target string) (done func(status int), err error) {
	noop := func(int) {}
	if c.ttl <= 0 {
		return noop, nil
	}
	c.mu.Lock()
	if c.knownLocked(target) {
		c.mu.Unlock()
		return nil, errKnownNotFound
	}
	if wait, ok := c.asking[target]; ok {
		c.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if c.known(target) {
			return nil, errKnownNotFound
		}
		return noop, nil
	}
	ch := make(chan struct{})
	c.asking[target] = ch
	c.mu.Unlock()
	var once sync.Once
	return func(status int) {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if status == http.StatusNotFound {
				c.rememberLocked(target)
			}
			delete(c.asking, target)
			close(ch)
		})
	}, nil
}

func (c *notFoundCache) rememberLocked(target string) {
	now := c.now()
	if c.bytes+len(target) > maxNotFoundBytes {
		for k, t := range c.until {
			if !now.Before(t) {
				c.forgetLocked(k)
			}
		}
		if c.bytes+len(target) > maxNotFoundBytes {
			clear(c.until) // all live: forgetting early only costs upstream requests
			c.bytes = 0
		}
	}
	if _, ok := c.until[target]; !ok {
		c.bytes += len(target)
	}
	c.until[target] = now.Add(c.ttl)
}

func (c *notFoundCache) forgetLocked(target string) {
	if _, ok := c.until[target]; ok {
		delete(c.until, target)
		c.bytes -= len(target)
	}
}
