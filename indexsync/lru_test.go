package indexsync

import (
	"fmt"
	"testing"

	"moonbit-registry/manifest"
)

func TestLRUBounds(t *testing.T) {
	t.Parallel()
	c := newLRU(3, 100)
	for i := range 5 {
		c.put(fmt.Sprint(i), nil, 10, c.generation())
	}
	if c.len() != 3 {
		t.Fatalf("entries = %d, want 3", c.len())
	}
	for _, k := range []string{"0", "1"} {
		if _, ok := c.get(k); ok {
			t.Errorf("%s not evicted", k)
		}
	}
	c.get("2") // now most recent
	c.put("big", nil, 80, c.generation())
	// 2 (10) + big (80) fit in 100; 3 and 4 had to go... only as needed.
	if _, ok := c.get("2"); !ok {
		t.Error("recently used entry evicted")
	}
	if c.bytes > 100 || c.len() > 3 {
		t.Errorf("over budget: %d bytes, %d entries", c.bytes, c.len())
	}
	c.put("huge", nil, 101, c.generation())
	if _, ok := c.get("huge"); ok {
		t.Error("entry over the whole budget cached")
	}
	c.put("2", nil, 5, c.generation()) // replace keeps accounting right
	c.remove("big")
	c.clear()
	if c.len() != 0 || c.bytes != 0 {
		t.Errorf("after clear: %d entries, %d bytes", c.len(), c.bytes)
	}
}

// A parse read before an invalidation must not be cached after it: the
// file it came from may have been replaced meanwhile.
func TestLRUDropsParsesOlderThanAnInvalidation(t *testing.T) {
	t.Parallel()
	for name, invalidate := range map[string]func(c *lru){
		"clear":  func(c *lru) { c.clear() },
		"remove": func(c *lru) { c.remove("other") },
	} {
		c := newLRU(10, 100)
		gen := c.generation() // a reader starts reading the file
		invalidate(c)         // a sync replaces files meanwhile
		c.put("m", []manifest.Entry{{Version: "1.0.0"}}, 10, gen)
		if _, ok := c.get("m"); ok {
			t.Errorf("%s: a parse from before the invalidation was cached", name)
		}
		c.put("m", nil, 10, c.generation())
		if _, ok := c.get("m"); !ok {
			t.Errorf("%s: a current parse was not cached", name)
		}
	}
}

// The largest index file the mirror reads fits the lookup cache, so no
// module is parsed again on every request for being too large to keep.
func TestLargestIndexFileIsCached(t *testing.T) {
	t.Parallel()
	c := newLRU(cacheMaxEntries, cacheMaxBytes)
	c.put("big/module", []manifest.Entry{{Module: "big/module", Version: "1.0.0"}}, maxIndexFile, c.generation())
	if _, ok := c.get("big/module"); !ok {
		t.Errorf("a parse of a %d-byte index file (the largest read) was not cached; the cache holds %d bytes", maxIndexFile, cacheMaxBytes)
	}
}
