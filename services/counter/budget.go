package counter

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/highgopress/highgopress/services/counter/app"
	"github.com/highgopress/highgopress/services/counter/domain"
	"github.com/highgopress/highgopress/services/counter/redisstore"
)

// DefaultRedisTimeout is the budget of one call to Redis
// (HGP_COUNTER_REDIS_TIMEOUT): dial, read and write timeouts of the client
// Build makes, and the deadline of every store call of a request (the
// earlier of it and the request's own deadline).
//
// A healthy Redis answers the counter's scripts in well under a
// millisecond, and even the saturated benchmarks stay below 10 ms at p99,
// so 1 s is two orders of magnitude above any healthy answer — fsync
// stalls under AOF, a loaded machine, or a rebuilt item's seed script do
// not turn into failures — while a frozen or unreachable Redis costs a
// client about a second instead of go-redis' 3-5 s defaults. It is not
// shorter because a write that times out is ambiguous (it may still be
// applied once Redis resumes): each false timeout is an Unavailable the
// client must retry.
const DefaultRedisTimeout = time.Second

// DefaultMySQLTimeout is the budget of one MySQL exchange of a rebuild or
// of settling (HGP_COUNTER_MYSQL_TIMEOUT).
const DefaultMySQLTimeout = 2 * time.Second

// budget bounds every call to a dependency by d and tells the two ways a
// call can run out of time apart: the caller's own deadline (or
// cancellation) is reported as the context error, so the client gets
// DeadlineExceeded (Canceled); the budget running out first means the
// dependency did not answer in time, reported as domain.ErrUnavailable
// (retry-safe: every write is idempotent).
type budget struct {
	d    time.Duration
	what string // "Redis" or "MySQL", with the variable that sets d
}

func (b budget) run(ctx context.Context, call func(context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, b.d)
	defer cancel()
	err := call(cctx)
	if err == nil {
		return nil
	}
	if ended(ctx) {
		perr := ctx.Err()
		if perr == nil { // the socket deadline fired a moment before the context's timer
			perr = context.DeadlineExceeded
		}
		if errors.Is(err, perr) && !errors.Is(err, domain.ErrUnavailable) {
			return err
		}
		return fmt.Errorf("%w (waiting for %s: %v)", perr, b.what, err)
	}
	if ended(cctx) && !errors.Is(err, domain.ErrUnavailable) {
		return fmt.Errorf("%w: %s did not answer within %s: %w", domain.ErrUnavailable, b.what, b.d, err)
	}
	return err
}

// ended reports whether ctx is done or its deadline has passed (a socket
// deadline set from it may fire before its own timer does).
func ended(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// call1 runs a call returning one value within b.
func call1[T any](ctx context.Context, b budget, f func(context.Context) (T, error)) (T, error) {
	var v T
	err := b.run(ctx, func(ctx context.Context) error {
		var err error
		v, err = f(ctx)
		return err
	})
	return v, err
}

// budgetedStore is the Redis store as the use cases see it: every call
// bounded by the Redis budget.
type budgetedStore struct {
	s *redisstore.Store
	b budget
}

var (
	_ app.Store  = budgetedStore{}
	_ app.Seeder = budgetedStore{}
)

func (s budgetedStore) SetLike(ctx context.Context, user string, item domain.ItemRef, like bool) (domain.LikeResult, error) {
	ctx, done := observeWrite(ctx, pick(like, "like", "unlike"))
	r, err := call1(ctx, s.b, func(ctx context.Context) (domain.LikeResult, error) { return s.s.SetLike(ctx, user, item, like) })
	done(r.Changed, err)
	return r, err
}

func (s budgetedStore) Increment(ctx context.Context, user string, in domain.Increment) (int64, error) {
	ctx, done := observeWrite(ctx, "increment")
	v, err := call1(ctx, s.b, func(ctx context.Context) (int64, error) { return s.s.Increment(ctx, user, in) })
	done(true, err)
	return v, err
}

func (s budgetedStore) SetFollow(ctx context.Context, user, target string, follow bool) (domain.FollowResult, error) {
	ctx, done := observeWrite(ctx, pick(follow, "follow", "unfollow"))
	r, err := call1(ctx, s.b, func(ctx context.Context) (domain.FollowResult, error) {
		return s.s.SetFollow(ctx, user, target, follow)
	})
	done(r.Changed, err)
	return r, err
}

func (s budgetedStore) ReadItems(ctx context.Context, fetch []domain.ItemRef, viewer string, check []domain.ItemRef) ([]domain.ItemCounts, []bool, error) {
	var liked []bool
	counts, err := call1(ctx, s.b, func(ctx context.Context) ([]domain.ItemCounts, error) {
		c, l, err := s.s.ReadItems(ctx, fetch, viewer, check)
		liked = l
		return c, err
	})
	return counts, liked, err
}

func (s budgetedStore) ReadUsers(ctx context.Context, fetch []string, viewer string, check []string) ([]domain.UserCounts, []bool, error) {
	var follows []bool
	counts, err := call1(ctx, s.b, func(ctx context.Context) ([]domain.UserCounts, error) {
		c, f, err := s.s.ReadUsers(ctx, fetch, viewer, check)
		follows = f
		return c, err
	})
	return counts, follows, err
}

func (s budgetedStore) SeedItem(ctx context.Context, item domain.ItemRef, snap domain.ItemSnapshot) (int64, error) {
	return call1(ctx, s.b, func(ctx context.Context) (int64, error) { return s.s.SeedItem(ctx, item, snap) })
}

func (s budgetedStore) SeedUser(ctx context.Context, user string, snap domain.UserSnapshot) (int64, error) {
	return call1(ctx, s.b, func(ctx context.Context) (int64, error) { return s.s.SeedUser(ctx, user, snap) })
}

func (s budgetedStore) ItemLoaded(ctx context.Context, item domain.ItemRef) (bool, error) {
	return call1(ctx, s.b, func(ctx context.Context) (bool, error) { return s.s.ItemLoaded(ctx, item) })
}

func (s budgetedStore) UserLoaded(ctx context.Context, user string) (bool, error) {
	return call1(ctx, s.b, func(ctx context.Context) (bool, error) { return s.s.UserLoaded(ctx, user) })
}

// budgetedDurable bounds every snapshot load from MySQL (the catch-up wait
// it starts with included).
type budgetedDurable struct {
	d app.Durable
	b budget
}

func (d budgetedDurable) LoadItem(ctx context.Context, item domain.ItemRef) (domain.ItemSnapshot, error) {
	return call1(ctx, d.b, func(ctx context.Context) (domain.ItemSnapshot, error) { return d.d.LoadItem(ctx, item) })
}

func (d budgetedDurable) LoadUser(ctx context.Context, user string) (domain.UserSnapshot, error) {
	return call1(ctx, d.b, func(ctx context.Context) (domain.UserSnapshot, error) { return d.d.LoadUser(ctx, user) })
}
