// Package cache is a short-lived in-process read cache for hot keys.
//
// Values live for a fixed TTL (typically 100ms): long enough to absorb a
// read storm on one popular item, short enough that other instances' writes
// show up quickly. Concurrent misses of one key are fetched once: the first
// caller leads the fetch, the others wait for its result (a keyed
// single-flight that, unlike golang.org/x/sync/singleflight, lets one caller
// lead many keys in a single fetch, so a 500-item read stays one Redis round
// trip). Invalidate drops a key and detaches any fetch in flight for it, so a
// caller that wrote through this instance always reads its own write.
package cache

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxEntries bounds the number of cached keys.
const DefaultMaxEntries = 100_000

// FetchFunc loads the values of keys[idx[0]], keys[idx[1]], ... in that order.
type FetchFunc[V any] func(ctx context.Context, idx []int) ([]V, error)

// Cache caches values of type V by key. Cached values are shared between
// callers and must be treated as read-only. The zero TTL disables caching
// (and the single-flight): every Get fetches every key.
type Cache[V any] struct {
	ttl        atomic.Int64 // time.Duration; SetTTL changes it at run time
	maxEntries int
	now        func() time.Time // time.Now; replaced in tests

	waiting atomic.Int64 // callers waiting for a fetch led by another caller
	obs     Observer     // nil: nobody counts

	mu        sync.Mutex
	entries   map[string]entry[V]
	flights   map[string]*flight[V]
	nextSweep time.Time
}

type entry[V any] struct {
	v       V
	expires time.Time
}

type flight[V any] struct {
	done chan struct{}
	v    V
	err  error
	// detached is set (under Cache.mu) when the key was invalidated while the
	// fetch was running: its result is still handed to the callers that
	// waited, but it is not cached.
	detached bool
}

// New returns a cache whose entries live for ttl; maxEntries <= 0 means
// DefaultMaxEntries.
func New[V any](ttl time.Duration, maxEntries int, opts ...Option) *Cache[V] {
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	c := &Cache[V]{
		obs:        o.observer,
		maxEntries: maxEntries,
		now:        time.Now,
		entries:    make(map[string]entry[V]),
		flights:    make(map[string]*flight[V]),
	}
	c.ttl.Store(int64(ttl))
	return c
}

// SetTTL changes the lifetime of cached entries (0 disables caching). The
// entries cached so far are dropped: none outlives the new lifetime, and
// none cached before a disabled spell is served after it.
func (c *Cache[V]) SetTTL(ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Duration(c.ttl.Load()) == max(ttl, 0) {
		return
	}
	c.ttl.Store(int64(max(ttl, 0)))
	clear(c.entries)
}

// TTL returns the lifetime of new entries.
func (c *Cache[V]) TTL() time.Duration { return time.Duration(c.ttl.Load()) }

// Enabled reports whether the cache keeps values at all.
func (c *Cache[V]) Enabled() bool { return c.ttl.Load() > 0 }

// Get returns the values of keys in order. Fresh cached values are returned
// as they are; keys another caller is already fetching are waited for; all
// other keys are loaded with one call of fetch, and cached. Get returns
// ctx.Err() as soon as ctx ends, also while a fetch it started is running:
// that fetch goes on (with ctx's values but not its cancellation) for the
// other callers waiting for it, and its result is still cached.
func (c *Cache[V]) Get(ctx context.Context, keys []string, fetch FetchFunc[V]) ([]V, error) {
	out := make([]V, len(keys))
	if !c.Enabled() {
		idx := make([]int, len(keys))
		for i := range idx {
			idx[i] = i
		}
		vals, err := fetch(ctx, idx)
		if err != nil {
			return nil, err
		}
		copy(out, vals)
		if c.obs != nil {
			c.obs.Observe(0, 0, len(keys))
		}
		return out, nil
	}

	var (
		lead    []int // first index of each key this call fetches
		leadFl  []*flight[V]
		waitIdx []int // indexes filled from a flight (ours or another caller's)
		waitFl  []*flight[V]
		mine    map[string]*flight[V]
		joined  bool // waits for a fetch another caller leads
		now     = c.now()
	)
	c.mu.Lock()
	for i, k := range keys {
		if e, ok := c.entries[k]; ok && now.Before(e.expires) {
			out[i] = e.v
			continue
		}
		if f, ok := c.flights[k]; ok {
			if mine[k] != f {
				joined = true
			}
			waitIdx, waitFl = append(waitIdx, i), append(waitFl, f)
			continue
		}
		if f, ok := mine[k]; ok { // repeated key in one request
			waitIdx, waitFl = append(waitIdx, i), append(waitFl, f)
			continue
		}
		f := &flight[V]{done: make(chan struct{})}
		if mine == nil {
			mine = make(map[string]*flight[V])
		}
		mine[k] = f
		c.flights[k] = f
		lead, leadFl = append(lead, i), append(leadFl, f)
		waitIdx, waitFl = append(waitIdx, i), append(waitFl, f)
	}
	c.mu.Unlock()
	if c.obs != nil {
		c.obs.Observe(len(keys)-len(waitIdx), len(waitIdx)-len(lead), len(lead))
	}

	if len(lead) > 0 {
		// The fetch serves other callers too, so it must not be cut short
		// by this caller's cancellation: it runs on its own goroutine, and
		// this caller waits for it like any other, until its own ctx ends.
		// The store's own timeouts bound the fetch.
		go c.lead(context.WithoutCancel(ctx), keys, lead, leadFl, fetch)
	}
	if joined {
		c.waiting.Add(1)
		defer c.waiting.Add(-1)
	}
	for j, f := range waitFl {
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if f.err != nil {
			return nil, f.err
		}
		out[waitIdx[j]] = f.v
	}
	return out, nil
}

// lead runs a fetch for the keys keys[lead[j]] and publishes its results to
// their flights. A panicking fetch fails the flights instead of leaving
// their waiters stranded (and does not take the process down: it runs
// outside the request's goroutine, where net/http would have recovered it).
func (c *Cache[V]) lead(ctx context.Context, keys []string, lead []int, fls []*flight[V], fetch FetchFunc[V]) {
	var (
		vals []V
		err  error = errFetchPanicked
	)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", errFetchPanicked, r)
		}
		c.complete(keys, lead, fls, vals, err)
	}()
	vals, err = fetch(ctx, lead)
}

// Waiting returns the number of callers now waiting for a fetch another
// caller leads (a measure of how much the single-flight saves; tests use
// it to know that callers have joined a fetch).
func (c *Cache[V]) Waiting() int { return int(c.waiting.Load()) }

// complete publishes the results of a fetch to waiting callers and the cache.
func (c *Cache[V]) complete(keys []string, lead []int, fls []*flight[V], vals []V, err error) {
	if err == nil && len(vals) != len(lead) {
		err = errShortFetch
	}
	now := c.now()
	c.mu.Lock()
	if err == nil && !now.Before(c.nextSweep) {
		c.sweep(now)
	}
	for j, f := range fls {
		k := keys[lead[j]]
		if err != nil {
			f.err = err
		} else {
			f.v = vals[j]
			if !f.detached && len(c.entries) < c.maxEntries {
				c.entries[k] = entry[V]{v: f.v, expires: now.Add(c.TTL())}
			}
		}
		if c.flights[k] == f {
			delete(c.flights, k)
		}
	}
	c.mu.Unlock()
	for _, f := range fls {
		close(f.done)
	}
}

// sweep drops expired entries; called with mu held at most once per TTL.
func (c *Cache[V]) sweep(now time.Time) {
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
	c.nextSweep = now.Add(c.TTL())
}

// Invalidate drops keys from the cache and detaches fetches in flight for
// them, so the next Get reads the store again.
func (c *Cache[V]) Invalidate(keys ...string) {
	if !c.Enabled() {
		return
	}
	c.mu.Lock()
	for _, k := range keys {
		delete(c.entries, k)
		if f, ok := c.flights[k]; ok {
			f.detached = true
			delete(c.flights, k)
		}
	}
	c.mu.Unlock()
}

// Len returns the number of cached entries, fresh or not yet swept.
func (c *Cache[V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

type cacheError string

func (e cacheError) Error() string { return string(e) }

const (
	errShortFetch    = cacheError("cache: fetch returned a wrong number of values")
	errFetchPanicked = cacheError("cache: fetch panicked")
)
