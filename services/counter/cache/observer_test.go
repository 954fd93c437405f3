package cache

import (
	"sync"
	"testing"
	"time"
)

type tally struct {
	mu                      sync.Mutex
	hits, coalesced, misses int
}

func (t *tally) Observe(h, c, m int) {
	t.mu.Lock()
	t.hits, t.coalesced, t.misses = t.hits+h, t.coalesced+c, t.misses+m
	t.mu.Unlock()
}

func (t *tally) get() [3]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return [3]int{t.hits, t.coalesced, t.misses}
}

// TestObserverCountsHitsCoalescedAndMisses: a first read misses, a repeated
// key in one call waits for the same fetch (coalesced), a read within the
// TTL hits, an expired or invalidated key misses again, and with caching
// off everything is a miss.
func TestObserverCountsHitsCoalescedAndMisses(t *testing.T) {
	obs := &tally{}
	c := New[int](100*time.Millisecond, 0, WithObserver(obs))
	clk := &clock{}
	clk.ns.Store(time.Unix(1000, 0).UnixNano())
	c.now = clk.now
	s := newStore()

	get(t, c, s, "a", "b", "a")
	if got := obs.get(); got != [3]int{0, 1, 2} {
		t.Fatalf("first read: hits, coalesced, misses = %v, want [0 1 2]", got)
	}
	get(t, c, s, "a", "b")
	if got := obs.get(); got != [3]int{2, 1, 2} {
		t.Fatalf("within the TTL: %v, want [2 1 2]", got)
	}
	c.Invalidate("a")
	clk.advance(50 * time.Millisecond)
	get(t, c, s, "a", "b")
	if got := obs.get(); got != [3]int{3, 1, 3} {
		t.Fatalf("after invalidating a: %v, want [3 1 3]", got)
	}
	clk.advance(200 * time.Millisecond)
	get(t, c, s, "a", "b")
	if got := obs.get(); got != [3]int{3, 1, 5} {
		t.Fatalf("after expiry: %v, want [3 1 5]", got)
	}

	off := &tally{}
	d := New[int](0, 0, WithObserver(off))
	get(t, d, s, "a", "b", "c")
	if got := off.get(); got != [3]int{0, 0, 3} {
		t.Fatalf("caching off: %v, want [0 0 3]", got)
	}
}
