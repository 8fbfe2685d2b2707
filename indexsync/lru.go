package indexsync

import (
	"container/list"
	"sync"

	"moonbit-registry/manifest"
)

// Bounds of the parsed-module cache. The real index has under a thousand
// modules and a few MB of lines, so this holds all of today's index, while
// a much larger index costs at most this much memory.
const (
	cacheMaxEntries = 4096
	cacheMaxBytes   = 32 << 20
)

// lru caches parsed .index files by module name, bounded both by entry
// count and by the size of the files they came from.
type lru struct {
	mu         sync.Mutex
	maxEntries int
	maxBytes   int64
	bytes      int64
	order      *list.List // front = most recently used; values are *lruEntry
	items      map[string]*list.Element
	// gen counts invalidations. A reader notes it before reading a file and
	// put drops the parse if it changed meanwhile: the file may have been
	// replaced under the reader (another process's sync).
	gen uint64
}

type lruEntry struct {
	module   string
	versions []manifest.Entry
	cost     int64
}

func newLRU(maxEntries int, maxBytes int64) *lru {
	return &lru{maxEntries: maxEntries, maxBytes: maxBytes, order: list.New(), items: map[string]*list.Element{}}
}

func (c *lru) get(module string) ([]manifest.Entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[module]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*lruEntry).versions, true
}

// generation is the invalidation count to pass to put.
func (c *lru) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// put stores a parse read when the cache was at generation gen; cost is the
// size of the file it came from. A parse older than the last invalidation,
// or a file larger than the whole budget, is not cached.
func (c *lru) put(module string, versions []manifest.Entry, cost int64, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cost > c.maxBytes || gen != c.gen {
		return
	}
	if el, ok := c.items[module]; ok {
		c.removeElement(el)
	}
	c.items[module] = c.order.PushFront(&lruEntry{module: module, versions: versions, cost: cost})
	c.bytes += cost
	for c.order.Len() > c.maxEntries || c.bytes > c.maxBytes {
		c.removeElement(c.order.Back())
	}
}

func (c *lru) remove(module string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if el, ok := c.items[module]; ok {
		c.removeElement(el)
	}
}

func (c *lru) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.order.Init()
	c.items = map[string]*list.Element{}
	c.bytes = 0
}

func (c *lru) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

func (c *lru) removeElement(el *list.Element) {
	e := el.Value.(*lruEntry)
	c.order.Remove(el)
	delete(c.items, e.module)
	c.bytes -= e.cost
}
