package cache

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/highgopress/highgopress/platform/testenv"
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
// release before answering v for every index. started must have room for
// every call the test expects (a fetch never blocks on it).
func blockingFetch(started chan<- struct{}, release <-chan struct{}, v int, calls *atomic.Int32) FetchFunc[int] {
	return func(_ context.Context, idx []int) ([]int, error) {
		calls.Add(1)
		select {
		case started <- struct{}{}:
		default:
		}
		<-release
		out := make([]int, len(idx))
		for i := range out {
			out[i] = v
		}
		return out, nil
	}
}

// waitTimeout bounds every wait in these tests: a broken cache fails a
// test instead of hanging it.
const waitTimeout = 30 * time.Second

// recv receives from ch or fails the test at the deadline.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// release returns a channel that blocking fetches wait on, closed when the
// test ends at the latest, so no fetch outlives it.
func release(t *testing.T) (ch chan struct{}, closeOnce func()) {
	ch = make(chan struct{})
	var once sync.Once
	closeOnce = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(closeOnce)
	return ch, closeOnce
}

func TestConcurrentMissesFetchOnce(t *testing.T) {
	c, _ := newTestCache(time.Hour)
	var calls atomic.Int32
	started := make(chan struct{}, 1)
	rel, releaseAll := release(t)
	fetch := blockingFetch(started, rel, 7, &calls)

	const n = 20
	type result struct {
		v   []int
		err error
	}
	results := make(chan result, n)
	for range n {
		go func() {
			v, err := c.Get(context.Background(), []string{"hot"}, fetch)
			results <- result{v, err}
		}()
	}
	recv(t, started, "the first fetch")
	// Hold the first fetch until every other caller waits for it: without
	// the single-flight they would start fetches of their own and never
	// be counted as waiting.
	testenv.Eventually(t, waitTimeout, "cache condition", func() bool { return c.Waiting() == n-1 })
	releaseAll()
	for range n {
		r := recv(t, results, "a Get")
		if r.err != nil || !equal(r.v, []int{7}) {
			t.Fatalf("Get = %v, %v; want [7]", r.v, r.err)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("%d fetches for one hot key; want 1", calls.Load())
	}
	if c.Waiting() != 0 {
		t.Fatalf("Waiting = %d after every Get returned", c.Waiting())
	}
}

// TestLeaderHonoursItsContext: the caller that starts a fetch returns when
// its own context ends, while the fetch it started goes on for the others
// and is still cached.
func TestLeaderHonoursItsContext(t *testing.T) {
	for _, how := range []string{"cancel", "deadline"} {
		t.Run(how, func(t *testing.T) {
			c, _ := newTestCache(time.Hour)
			var calls atomic.Int32
			started := make(chan struct{}, 1)
			rel, releaseAll := release(t)
			fetch := blockingFetch(started, rel, 5, &calls)

			var (
				ctx    context.Context
				cancel context.CancelFunc
				want   error
			)
			if how == "cancel" {
				ctx, cancel = context.WithCancel(context.Background())
				want = context.Canceled
			} else {
				ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
				want = context.DeadlineExceeded
			}
			defer cancel()
			leader := make(chan error, 1)
			go func() {
				_, err := c.Get(ctx, []string{"k"}, fetch)
				leader <- err
			}()
			recv(t, started, "the fetch")
			// A second caller joins the same fetch.
			follower := make(chan []int, 1)
			go func() {
				v, _ := c.Get(context.Background(), []string{"k"}, fetch)
				follower <- v
			}()
			testenv.Eventually(t, waitTimeout, "cache condition", func() bool { return c.Waiting() == 1 })
			if how == "cancel" {
				cancel()
			}
			// The fetch is still blocked: the leader must not wait for it.
			if err := recv(t, leader, "the leader to give up"); !errors.Is(err, want) {
				t.Fatalf("leader's Get = %v; want %v", err, want)
			}
			releaseAll()
			if v := recv(t, follower, "the follower"); !equal(v, []int{5}) {
				t.Fatalf("follower got %v; want [5] from the leader's fetch", v)
			}
			s := newStore()
			if got := get(t, c, s, "k"); !equal(got, []int{5}) || s.calls != 0 || calls.Load() != 1 {
				t.Fatalf("after the abandoned fetch: %v with %d+%d fetches; want cached [5] from one fetch", got, calls.Load(), s.calls)
			}
		})
	}
}

func TestFetchPanicFailsItsFlights(t *testing.T) {
	c, _ := newTestCache(time.Hour)
	_, err := c.Get(context.Background(), []string{"k"}, func(context.Context, []int) ([]int, error) {
		panic("boom")
	})
	if !errors.Is(err, errFetchPanicked) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Get with a panicking fetch = %v", err)
	}
	s := newStore()
	s.set("k", 1)
	if got := get(t, c, s, "k"); !equal(got, []int{1}) {
		t.Fatalf("after a panicking fetch = %v; want [1]", got)
	}
}

func TestInvalidateDetachesFlight(t *testing.T) {
	c, _ := newTestCache(time.Hour)
	var calls atomic.Int32
	started := make(chan struct{}, 1)
	rel, releaseAll := release(t)
	done := make(chan []int, 1)
	go func() {
		v, _ := c.Get(context.Background(), []string{"k"}, blockingFetch(started, rel, 1, &calls))
		done <- v
	}()
	recv(t, started, "the fetch")
	// A write lands while the read is in flight: the old value must not be
	// cached, and a new reader must not join the stale fetch.
	c.Invalidate("k")
	s := newStore()
	s.set("k", 2)
	if got := get(t, c, s, "k"); !equal(got, []int{2}) {
		t.Fatalf("read after invalidation = %v; want [2]", got)
	}
	releaseAll()
	if v := recv(t, done, "the detached flight's caller"); !equal(v, []int{1}) {
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
	rel, _ := release(t)
	go func() { _, _ = c.Get(context.Background(), []string{"k"}, blockingFetch(started, rel, 1, &calls)) }()
	recv(t, started, "the fetch")
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

func TestSetTTLAtRunTime(t *testing.T) {
	c, clk := newTestCache(time.Hour)
	s := newStore()
	s.set("a", 1)
	get(t, c, s, "a")
	c.SetTTL(0)
	if c.Enabled() || c.TTL() != 0 {
		t.Fatalf("after SetTTL(0): enabled %v, ttl %v", c.Enabled(), c.TTL())
	}
	s.set("a", 2)
	if got := get(t, c, s, "a"); !equal(got, []int{2}) {
		t.Fatalf("disabled at run time = %v; want a fresh [2]", got)
	}
	c.SetTTL(10 * time.Millisecond)
	get(t, c, s, "a")
	s.set("a", 3)
	clk.advance(10 * time.Millisecond)
	if got := get(t, c, s, "a"); !equal(got, []int{3}) {
		t.Fatalf("after the new, shorter TTL = %v; want [3]", got)
	}
}
