package proxy

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// remember404 runs one ask for target that upstream answers with status.
func remember404(t *testing.T, c *notFoundCache, target string, status int) {
	t.Helper()
	done, err := c.ask(context.Background(), target)
	if err != nil {
		t.Fatalf("ask %s: %v", target, err)
	}
	done(status)
}

func TestNotFoundCacheTTL(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	c := newNotFoundCache(time.Minute)
	c.now = func() time.Time { return now }
	remember404(t, c, "/a", http.StatusNotFound)
	remember404(t, c, "/b", http.StatusOK)
	remember404(t, c, "/c", 0) // no answer
	for _, tt := range []struct {
		target string
		after  time.Duration
		want   bool
	}{
		{"/a", 0, true},
		{"/b", 0, false},
		{"/c", 0, false},
		{"/a", 59 * time.Second, true},
		{"/a", time.Minute, false},
	} {
		now = time.Unix(1_000_000, 0).Add(tt.after)
		if got := c.known(tt.target); got != tt.want {
			t.Errorf("%s after %s: known %v, want %v", tt.target, tt.after, got, tt.want)
		}
	}
	if c.bytes != 0 || len(c.until) != 0 {
		t.Errorf("an expired entry is still held: %d bytes, %v", c.bytes, c.until)
	}
}

func TestNotFoundCacheMemoryBounded(t *testing.T) {
	t.Parallel()
	c := newNotFoundCache(time.Hour)
	long := strings.Repeat("x", 60<<10) // a path near the header size limit
	for i := range 200 {                // 12 MB of targets in all
		remember404(t, c, fmt.Sprintf("/%d/%s", i, long), http.StatusNotFound)
		if c.bytes > maxNotFoundBytes {
			t.Fatalf("after %d targets: %d bytes remembered, over %d", i+1, c.bytes, maxNotFoundBytes)
		}
	}
	if !c.known("/199/" + long) {
		t.Error("the newest 404 was forgotten")
	}
}
