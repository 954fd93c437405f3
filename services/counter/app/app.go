// Package app holds the counter service's use cases: it validates every
// request (package validate), enforces that writes have an acting user,
// serves reads through a short-lived cache and calls the store.
package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/highgopress/highgopress/services/counter/cache"
	"github.com/highgopress/highgopress/services/counter/domain"
	"github.com/highgopress/highgopress/services/counter/validate"
)

// Store persists counters. Every write is atomic and records the event in
// the outbox when (and only when) it changes state.
type Store interface {
	// SetLike likes (like=true) or unlikes an item as user.
	SetLike(ctx context.Context, user string, item domain.ItemRef, like bool) (domain.LikeResult, error)
	// Increment applies in once per (user, idempotency key) and returns the
	// value after the first application; a key reused with other
	// parameters fails with domain.ErrIdempotencyConflict; a metric the
	// item does not have yet fails with domain.ErrTooManyMetrics when the
	// item already has the most metrics allowed.
	Increment(ctx context.Context, user string, in domain.Increment) (int64, error)
	// SetFollow makes user follow (follow=true) or unfollow target.
	SetFollow(ctx context.Context, user, target string, follow bool) (domain.FollowResult, error)
	// ReadItems returns the counts of fetch and, when viewer is not empty,
	// whether viewer likes each of check.
	ReadItems(ctx context.Context, fetch []domain.ItemRef, viewer string, check []domain.ItemRef) ([]domain.ItemCounts, []bool, error)
	// ReadUsers returns the counts of fetch and, when viewer is not empty,
	// whether viewer follows each of check.
	ReadUsers(ctx context.Context, fetch []string, viewer string, check []string) ([]domain.UserCounts, []bool, error)
}

// Service implements the counter use cases. Acting users come from the
// caller (the handler takes them from the verified identity header only);
// "" means anonymous, which is allowed for reads only.
type Service struct {
	logger *slog.Logger
	store  Store
	items  *cache.Cache[domain.ItemCounts]
	users  *cache.Cache[domain.UserCounts]
	// rebuilder is nil without a durable record.
	rebuilder *rebuilder
}

// New returns a Service over store.
func New(logger *slog.Logger, store Store, opts ...Option) *Service {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	s := &Service{
		logger: logger,
		store:  store,
		items:  cache.New[domain.ItemCounts](o.cacheTTL, o.cacheEntries, cache.WithObserver(newCacheObserver("items"))),
		users:  cache.New[domain.UserCounts](o.cacheTTL, o.cacheEntries, cache.WithObserver(newCacheObserver("users"))),
	}
	if o.durable != nil {
		s.rebuilder = &rebuilder{durable: o.durable, seeder: o.seeder, timeout: o.loadTimeout,
			parallel: maxRebuildParallel, flights: map[string]*rebuildFlight{}}
	}
	return s
}

// SetCacheTTL changes the hot-read caches' lifetime (HGP_COUNTER_CACHE_TTL
// at run time; 0 disables them).
func (s *Service) SetCacheTTL(ttl time.Duration) {
	s.items.SetTTL(ttl)
	s.users.SetTTL(ttl)
}

// CacheStats describes the read caches at one moment.
type CacheStats struct {
	// Items and Users are the numbers of cached entries (fresh or not yet
	// swept).
	Items, Users int
	// Waiting is the number of reads now waiting for a Redis fetch that
	// another read leads (the single-flight at work).
	Waiting int
}

// CacheStats returns the state of the read caches.
func (s *Service) CacheStats() CacheStats {
	return CacheStats{
		Items:   s.items.Len(),
		Users:   s.users.Len(),
		Waiting: s.items.Waiting() + s.users.Waiting(),
	}
}

// itemKey is the cache key of an item (namespaces cannot contain '/').
func itemKey(it domain.ItemRef) string { return it.Namespace + "/" + it.ID }

// Like makes actor like item.
func (s *Service) Like(ctx context.Context, actor string, item domain.ItemRef) (domain.LikeResult, error) {
	return s.setLike(ctx, actor, item, true)
}

// Unlike undoes a like of item by actor.
func (s *Service) Unlike(ctx context.Context, actor string, item domain.ItemRef) (domain.LikeResult, error) {
	return s.setLike(ctx, actor, item, false)
}

func (s *Service) setLike(ctx context.Context, actor string, item domain.ItemRef, like bool) (domain.LikeResult, error) {
	if err := validate.Like(actor, item); err != nil {
		return domain.LikeResult{}, err
	}
	// Invalidate even when the store failed: the write may have applied.
	defer s.items.Invalidate(itemKey(item))
	return withRebuild(ctx, s, false, func() (domain.LikeResult, error) { return s.store.SetLike(ctx, actor, item, like) })
}

// Increment adds in.Delta to in.Metric of in.Item once per idempotency key.
func (s *Service) Increment(ctx context.Context, actor string, in domain.Increment) (int64, error) {
	if err := validate.Increment(actor, in); err != nil {
		return 0, err
	}
	defer s.items.Invalidate(itemKey(in.Item))
	return withRebuild(ctx, s, false, func() (int64, error) { return s.store.Increment(ctx, actor, in) })
}

// Follow makes actor follow target.
func (s *Service) Follow(ctx context.Context, actor, target string) (domain.FollowResult, error) {
	return s.setFollow(ctx, actor, target, true)
}

// Unfollow makes actor stop following target.
func (s *Service) Unfollow(ctx context.Context, actor, target string) (domain.FollowResult, error) {
	return s.setFollow(ctx, actor, target, false)
}

func (s *Service) setFollow(ctx context.Context, actor, target string, follow bool) (domain.FollowResult, error) {
	if err := validate.Follow(actor, target); err != nil {
		return domain.FollowResult{}, err
	}
	defer s.users.Invalidate(actor, target)
	return withRebuild(ctx, s, false, func() (domain.FollowResult, error) { return s.store.SetFollow(ctx, actor, target, follow) })
}

// GetCounts returns the counts of items in order, with viewer's likes.
// Counts may come from the cache; whether the viewer likes an item is read
// from the store on every call (it is never cached).
func (s *Service) GetCounts(ctx context.Context, viewer string, items []domain.ItemRef) ([]domain.ItemView, error) {
	if err := validate.GetCounts(viewer, items); err != nil {
		return nil, err
	}
	return withRebuild(ctx, s, true, func() ([]domain.ItemView, error) { return s.getCounts(ctx, viewer, items) })
}

func (s *Service) getCounts(ctx context.Context, viewer string, items []domain.ItemRef) ([]domain.ItemView, error) {
	keys := make([]string, len(items))
	for i, it := range items {
		keys[i] = itemKey(it)
	}
	var (
		liked   []bool
		checked bool
	)
	counts, err := s.items.Get(ctx, keys, func(ctx context.Context, idx []int) ([]domain.ItemCounts, error) {
		fetch := make([]domain.ItemRef, len(idx))
		for j, i := range idx {
			fetch[j] = items[i]
		}
		// The viewer's likes ride along in the same round trip.
		c, l, err := s.store.ReadItems(ctx, fetch, viewer, items)
		liked, checked = l, true
		return c, err
	})
	if err != nil {
		return nil, err
	}
	if viewer != "" && !checked {
		if _, liked, err = s.store.ReadItems(ctx, nil, viewer, items); err != nil {
			return nil, err
		}
	}
	out := make([]domain.ItemView, len(items))
	for i, it := range items {
		out[i] = domain.ItemView{Item: it, Counts: counts[i], ViewerLiked: i < len(liked) && liked[i]}
	}
	return out, nil
}

// GetUserStats returns the follow counts of users in order, with whether
// viewer follows each. As with GetCounts only the counts are cached.
func (s *Service) GetUserStats(ctx context.Context, viewer string, users []string) ([]domain.UserView, error) {
	if err := validate.GetUserStats(viewer, users); err != nil {
		return nil, err
	}
	return withRebuild(ctx, s, true, func() ([]domain.UserView, error) { return s.getUserStats(ctx, viewer, users) })
}

func (s *Service) getUserStats(ctx context.Context, viewer string, users []string) ([]domain.UserView, error) {
	var (
		follows []bool
		checked bool
	)
	counts, err := s.users.Get(ctx, users, func(ctx context.Context, idx []int) ([]domain.UserCounts, error) {
		fetch := make([]string, len(idx))
		for j, i := range idx {
			fetch[j] = users[i]
		}
		c, f, err := s.store.ReadUsers(ctx, fetch, viewer, users)
		follows, checked = f, true
		return c, err
	})
	if err != nil {
		return nil, err
	}
	if viewer != "" && !checked {
		if _, follows, err = s.store.ReadUsers(ctx, nil, viewer, users); err != nil {
			return nil, err
		}
	}
	out := make([]domain.UserView, len(users))
	for i, u := range users {
		out[i] = domain.UserView{UserID: u, Counts: counts[i], ViewerFollows: i < len(follows) && follows[i]}
	}
	return out, nil
}

// ReadCounts returns the current counts of items from the store, bypassing
// the read cache (whose entries may predate a write served by another
// replica), rebuilding missing state like GetCounts. Items must be valid
// (WatchCounts validates them once, with validate.Watch).
func (s *Service) ReadCounts(ctx context.Context, items []domain.ItemRef) ([]domain.ItemCounts, error) {
	return withRebuild(ctx, s, true, func() ([]domain.ItemCounts, error) {
		counts, _, err := s.store.ReadItems(ctx, items, "", nil)
		return counts, err
	})
}
