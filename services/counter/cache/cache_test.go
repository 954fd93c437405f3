package cache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a manual clock for TTL tests.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func newTestCache(ttl time.Duration) (*Cache[int], *clock) {
	c := New[int](ttl, 0)
	clk := &clock{}
	clk.ns.Store(time.Unix(1000, 0).UnixNano())
	c.now = clk.now
	return c, clk
}

// store is a fake backing store counting fetches per key.
type store struct {
	mu      sync.Mutex
	values  map[string]int
	fetches map[string]int
	calls   int
}

func newStore() *store { return &store{values: map[string]int{}, fetches: map[string]int{}} }

func (s *store) fetcher(keys []string) FetchFunc[int] {
	return func(_ context.Context, idx []int) ([]int, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.calls++
		out := make([]int, len(idx))
		for j, i := range idx {
			s.fetches[keys[i]]++
			out[j] = s.values[keys[i]]
		}
		return out, nil
	}
}

func (s *store) set(k string, v int) { s.mu.Lock(); s.values[k] = v; s.mu.Unlock() }

func get(t *testing.T, c *Cache[int], s *store, keys ...string) []int {
	t.Helper()
	v, err := c.Get(context.Background(), keys, s.fetcher(keys))
	if err != nil {
		t.Fatalf("Get(%v): %v", keys, err)
	}
	return v
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestHitsMissesAndExpiry(t *testing.T) {
	c, clk := newTestCache(100 * time.Millisecond)
	s := newStore()
	s.set("a", 1)
	s.set("b", 2)
	if got := get(t, c, s, "a", "b", "a"); !equal(got, []int{1, 2, 1}) {
		t.Fatalf("first read = %v", got)
	}
	if s.fetches["a"] != 1 || s.calls != 1 {
		t.Fatalf("repeated key fetched %d times in %d calls; want once in one call", s.fetches["a"], s.calls)
	}
	s.set("a", 10)
	if got := get(t, c, s, "a", "b"); !equal(got, []int{1, 2}) || s.calls != 1 {
		t.Fatalf("within TTL = %v after %d calls; want cached [1 2] after 1", got, s.calls)
	}
	clk.advance(100 * time.Millisecond)
	if got := get(t, c, s, "a"); !equal(got, []int{10}) {
		t.Fatalf("after TTL = %v; want [10]", got)
	}
}

func TestInvalidate(t *testing.T) {
	c, _ := newTestCache(time.Hour)
	s := newStore()
	s.set("a", 1)
	get(t, c, s, "a")
	s.set("a", 2)
	c.Invalidate("a")
	if got := get(t, c, s, "a"); !equal(got, []int{2}) {
		t.Fatalf("after Invalidate = %v; want [2]", got)
	}
}

func TestDisabledFetchesEverything(t *testing.T) {
	c := New[int](0, 0)
	s := newStore()
	s.set("a", 1)
	for range 3 {
		if got := get(t, c, s, "a", "a"); !equal(got, []int{1, 1}) {
			t.Fatalf("got %v", got)
		}
	}
	if s.fetches["a"] != 6 {
		t.Fatalf("disabled cache fetched %d times; want 6", s.fetches["a"])
	}
	c.Invalidate("a") // no-op, must not panic
}

// blockingFetch returns a fetch that signals when it starts and waits for
// release before answering v for every index.
func blockingFetch(started chan<- struct{}, release <-chan struct{}, v int, calls *atomic.Int32) FetchFunc[int] {
	return func(_ context.Context, idx []int) ([]int, error) {
		calls.Add(1)
		started <- struct{}{}
		<-release
		out := make([]int, len(idx))
		for i := range out {
			out[i] = v
		}
		return out, nil
	}
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached before the deadline")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestConcurrentMissesFetchOnce(t *testing.T) {
	c, _ := newTestCache(time.Hour)
	var calls atomic.Int32
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	fetch := blockingFetch(started, release, 7, &calls)

	const n = 20
	results := make(chan int, n)
	errs := make(chan error, n)
	var joined atomic.Int32
	for range n {
		go func() {
			joined.Add(1)
			v, err := c.Get(context.Background(), []string{"hot"}, fetch)
			if err != nil {
				errs <- err
				return
			}
			results <- v[0]
		}()
	}
	<-started // one leader is fetching
	waitFor(t, func() bool { return joined.Load() == n })
	// Every other caller either waits on the flight or has not looked yet;
	// either way none may start a second fetch while the first runs.
	close(release)
	for range n {
		select {
		case v := <-results:
			if v != 7 {
				t.Fatalf("got %d; want 7", v)
			}
		case err := <-errs:
			t.Fatal(err)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("%d fetches for one hot key; want 1", calls.Load())
	}
}

func TestInvalidateDetachesFlight(t *testing.T) {
	c, _ := newTestCache(time.Hour)
	var calls atomic.Int32
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	done := make(chan []int, 1)
	go func() {
		v, _ := c.Get(context.Background(), []string{"k"}, blockingFetch(started, release, 1, &calls))
		done <- v
	}()
	<-started
	// A write lands while the read is in flight: the old value must not be
	// cached, and a new reader must not join the stale fetch.
	c.Invalidate("k")
	s := newStore()
	s.set("k", 2)
	if got := get(t, c, s, "k"); !equal(got, []int{2}) {
		t.Fatalf("read after invalidation = %v; want [2]", got)
	}
	close(release)
	if v := <-done; !equal(v, []int{1}) {
		t.Fatalf("detached flight returned %v to its caller; want [1]", v)
	}
	if got := get(t, c, s, "k"); !equal(got, []int{2}) {
		t.Fatalf("detached flight overwrote the cache: %v", got)
	}
}

func TestErrorsAreNotCached(t *testing.T) {
	c, _ := newTestCache(time.Hour)
	boom := errors.New("boom")
	_, err := c.Get(context.Background(), []string{"k"}, func(context.Context, []int) ([]int, error) { return nil, boom })
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v; want boom", err)
	}
	s := newStore()
	s.set("k", 3)
	if got := get(t, c, s, "k"); !equal(got, []int{3}) {
		t.Fatalf("after error = %v; want [3]", got)
	}
	if _, err := c.Get(context.Background(), []string{"x"}, func(context.Context, []int) ([]int, error) { return nil, nil }); err == nil {
		t.Fatal("a fetch returning too few values must fail")
	}
}

func TestWaiterHonoursItsContext(t *testing.T) {
	c, _ := newTestCache(time.Hour)
	var calls atomic.Int32
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	defer close(release)
	go func() { _, _ = c.Get(context.Background(), []string{"k"}, blockingFetch(started, release, 1, &calls)) }()
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Get(ctx, []string{"k"}, func(context.Context, []int) ([]int, error) {
		t.Error("a waiter must not fetch")
		return nil, nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v; want context.Canceled", err)
	}
}

func TestMaxEntriesAndSweep(t *testing.T) {
	c := New[int](time.Hour, 2)
	clk := &clock{}
	c.now = clk.now
	s := newStore()
	get(t, c, s, "a", "b", "c")
	if c.Len() != 2 {
		t.Fatalf("Len = %d; want capped at 2", c.Len())
	}
	clk.advance(2 * time.Hour)
	get(t, c, s, "d")
	if c.Len() != 1 {
		t.Fatalf("Len after sweep = %d; want 1", c.Len())
	}
}
