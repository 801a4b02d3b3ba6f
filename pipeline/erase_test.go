package pipeline

import (
	"testing"
)

// TestOrderedIO: every chunk of [start, size) is done once, post sees them
// in order whatever order the requests finish in, and nothing is
// submitted after stop.
func TestOrderedIO(t *testing.T) {
	bufs := [][]byte{make([]byte, 10), make([]byte, 10), make([]byte, 10)} // pieces of 10 bytes (the pacer's 1 MiB is capped by the buffer)
	var seen []int64
	orderedIO(5, 97, bufs, func() bool { return false }, func(*chunk) {},
		func(c *chunk) {
			if c.off%20 == 5 { // some finish later than the next one
				for i := 0; i < 1e5; i++ {
					_ = i
				}
			}
		},
		func(c *chunk) bool {
			if n := len(seen); n > 0 && seen[n-1] != c.off-10 {
				t.Errorf("post saw %d after %d", c.off, seen[n-1])
			}
			seen = append(seen, c.off)
			return true
		})
	if len(seen) != 10 || seen[0] != 5 || seen[9] != 95 {
		t.Errorf("chunks seen: %v", seen)
	}
	submitted := 0
	orderedIO(0, 1000, bufs, func() bool { return submitted >= 4 }, func(*chunk) { submitted++ }, func(*chunk) {},
		func(c *chunk) bool { return true })
	if submitted != 4 {
		t.Errorf("submitted %d chunks after stop, want 4", submitted)
	}
	posts := 0
	orderedIO(0, 1000, bufs, func() bool { return false }, func(*chunk) {}, func(*chunk) {},
		func(c *chunk) bool { posts++; return posts < 2 })
	if posts != 2 {
		t.Errorf("post called %d times after it returned false, want 2", posts)
	}
}

// TestPacer: requests are 1 MiB until a rate is measured, then sized so that
// those in flight take about stopWithin, within [1 MiB, max].
func TestPacer(t *testing.T) {
	var p pacer
	if n := p.size(16 << 20); n != 1<<20 {
		t.Errorf("before a rate: %d", n)
	}
	p.rate = 4e6 // a slow USB stick
	if n := p.size(16 << 20); n != 1<<20 {
		t.Errorf("at 4 MB/s: %d, want 1 MiB", n)
	}
	p.rate = 60e6
	if n := p.size(16 << 20); n != 9<<20 {
		t.Errorf("at 60 MB/s: %d, want 9 MiB (3 in flight: 0.47 s)", n)
	}
	p.rate = 2e9
	if n := p.size(16 << 20); n != 16<<20 {
		t.Errorf("at 2 GB/s: %d, want the 16 MiB cap", n)
	}
}
