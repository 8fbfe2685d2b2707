package indexsync

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkSyncIdle: what a sync costs when upstream has not moved, on
// the real index, for a mirror serving upstream's commits ("plain") and
// for one composing 50 private modules over them ("composed": it rebuilds
// the tree and finds it unchanged).
func BenchmarkSyncIdle(b *testing.B) {
	up := startUpstream(b, realIndex(b))
	for _, mode := range []string{"plain", "composed"} {
		b.Run(mode, func(b *testing.B) {
			m := newTestMirror(b, up.IndexURL(), func(o *Options) {
				if mode == "composed" {
					o.Overlay = privateModules(50)
				}
			})
			if _, err := m.Sync(b.Context()); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := m.Sync(b.Context()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRecompose: a publish's index rebuild (one private module
// changed among 50) on the real index, from the overlay to main checked
// out.
func BenchmarkRecompose(b *testing.B) {
	up := startUpstream(b, realIndex(b))
	ov := privateModules(50)
	m := newTestMirror(b, up.IndexURL(), func(o *Options) { o.Overlay = ov })
	if _, err := m.Sync(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		ov.set("user/acme/m0.index", privateLine("acme/m0", fmt.Sprintf("1.0.%d", i+1), "f"), time.Unix(int64(1e9+i), 0))
		if _, err := m.Recompose(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
}

// privateModules is an overlay of n private modules under acme.
func privateModules(n int) *memOverlay {
	ov := &memOverlay{owners: []string{"acme"}}
	for i := range n {
		mod := fmt.Sprintf("acme/m%d", i)
		ov.set("user/"+mod+".index", privateLine(mod, "1.0.0", "e"), time.Unix(1e9, 0))
	}
	return ov
}
