package durable

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/highgopress/highgopress/platform/durabledb"
	"github.com/highgopress/highgopress/services/counter/domain"
)

// MaxBatch is the most items (or users) one snapshot read loads.
const MaxBatch = 500

// coalescer turns concurrent loads of single keys into batch loads, in the
// manner of a group commit: while one batch runs, the keys asked for in
// the meantime gather in the next one, which starts when the running one
// ends. A lone load therefore runs at once, and a request rebuilding 500
// items (or 500 requests rebuilding one each) costs a couple of catch-up
// waits and transactions rather than 500.
type coalescer[K comparable, V any] struct {
	load func(ctx context.Context, keys []K) (map[K]V, error)

	mu      sync.Mutex
	running bool
	queue   []*pending[K, V] // batches gathering while one runs

	batches atomic.Int64
}

type pending[K comparable, V any] struct {
	keys []K
	has  map[K]bool
	done chan struct{}
	res  map[K]V
	err  error
}

// get returns key's value from a batch load. The load runs detached from
// ctx's cancellation (it serves other callers too); get returns when the
// batch is done or ctx ends.
func (c *coalescer[K, V]) get(ctx context.Context, key K) (V, error) {
	c.mu.Lock()
	var p *pending[K, V]
	if n := len(c.queue); n > 0 && (len(c.queue[n-1].keys) < MaxBatch || c.queue[n-1].has[key]) {
		p = c.queue[n-1]
	} else {
		p = &pending[K, V]{has: map[K]bool{}, done: make(chan struct{})}
		c.queue = append(c.queue, p)
	}
	if !p.has[key] {
		p.has[key] = true
		p.keys = append(p.keys, key)
	}
	start := !c.running
	c.running = true
	c.mu.Unlock()
	if start {
		go c.run(context.WithoutCancel(ctx))
	}
	select {
	case <-p.done:
		return p.res[key], p.err
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}

// run loads the queued batches one at a time until none is left.
func (c *coalescer[K, V]) run(ctx context.Context) {
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.running = false
			c.mu.Unlock()
			return
		}
		p := c.queue[0]
		c.queue = c.queue[1:]
		c.mu.Unlock()
		c.batches.Add(1)
		p.res, p.err = c.load(ctx, p.keys)
		close(p.done)
	}
}

// loadItems reads the snapshots of items in one transaction, after one
// catch-up wait.
func (s *Store) loadItems(ctx context.Context, items []domain.ItemRef) (map[domain.ItemRef]domain.ItemSnapshot, error) {
	s.catchUp(ctx)
	want := make(map[domain.ItemRef]bool, len(items))
	var namespaces, ids []string
	for _, it := range items {
		want[it] = true
		if !slices.Contains(namespaces, it.Namespace) {
			namespaces = append(namespaces, it.Namespace)
		}
		ids = append(ids, it.ID)
	}
	out := make(map[domain.ItemRef]domain.ItemSnapshot, len(items))
	err := s.read(ctx, func(q *durabledb.Queries) error {
		likers, err := q.LikersOfItems(ctx, durabledb.LikersOfItemsParams{Namespaces: namespaces, Ids: ids})
		if err != nil {
			return fmt.Errorf("likers: %w", err)
		}
		for _, r := range likers {
			it := domain.ItemRef{Namespace: r.Namespace, ID: r.ItemID}
			if want[it] {
				snap := out[it]
				snap.Likers = append(snap.Likers, r.UserID)
				out[it] = snap
			}
		}
		metrics, err := q.MetricsOfItems(ctx, durabledb.MetricsOfItemsParams{Namespaces: namespaces, Ids: ids})
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		for _, r := range metrics {
			it := domain.ItemRef{Namespace: r.Namespace, ID: r.ItemID}
			if !want[it] || r.Metric == domain.LikesMetric {
				continue
			}
			snap := out[it]
			if snap.Metrics == nil {
				snap.Metrics = map[string]int64{}
			}
			snap.Metrics[r.Metric] = r.Value
			out[it] = snap
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// loadUsers reads the follow snapshots of users in one transaction, after
// one catch-up wait.
func (s *Store) loadUsers(ctx context.Context, users []string) (map[string]domain.UserSnapshot, error) {
	s.catchUp(ctx)
	out := make(map[string]domain.UserSnapshot, len(users))
	err := s.read(ctx, func(q *durabledb.Queries) error {
		following, err := q.FollowingOfUsers(ctx, users)
		if err != nil {
			return fmt.Errorf("following: %w", err)
		}
		for _, r := range following {
			snap := out[r.Follower]
			snap.Following = append(snap.Following, r.Followee)
			out[r.Follower] = snap
		}
		followers, err := q.FollowersOfUsers(ctx, users)
		if err != nil {
			return fmt.Errorf("followers: %w", err)
		}
		for _, r := range followers {
			snap := out[r.Followee]
			snap.Followers = append(snap.Followers, r.Follower)
			out[r.Followee] = snap
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SnapshotReads returns how many snapshot transactions the Store ran for
// LoadItem and LoadUser (loads batched together count once).
func (s *Store) SnapshotReads() int64 { return s.items.batches.Load() + s.users.batches.Load() }
