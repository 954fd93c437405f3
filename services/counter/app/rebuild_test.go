package app_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/counter/app"
	"github.com/highgopress/highgopress/services/counter/domain"
	"github.com/highgopress/highgopress/services/counter/redisstore"
)

// fakeDurable is an in-memory durable record counting its loads; a load
// waits for gate (when set) and fails with fail (when set).
type fakeDurable struct {
	items map[domain.ItemRef]domain.ItemSnapshot
	users map[string]domain.UserSnapshot
	loads atomic.Int64
	gate  chan struct{}
	fail  atomic.Pointer[error]
}

func (f *fakeDurable) wait(ctx context.Context) error {
	f.loads.Add(1)
	if p := f.fail.Load(); p != nil {
		return *p
	}
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (f *fakeDurable) LoadItem(ctx context.Context, it domain.ItemRef) (domain.ItemSnapshot, error) {
	if err := f.wait(ctx); err != nil {
		return domain.ItemSnapshot{}, err
	}
	return f.items[it], nil
}

func (f *fakeDurable) LoadUser(ctx context.Context, u string) (domain.UserSnapshot, error) {
	if err := f.wait(ctx); err != nil {
		return domain.UserSnapshot{}, err
	}
	return f.users[u], nil
}

// rebuildEnv is a Service over a redisstore on miniredis with durable as
// its durable record.
func rebuildEnv(t *testing.T, durable *fakeDurable, cacheTTL time.Duration) (*app.Service, *miniredis.Miniredis) {
	t.Helper()
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	store := redisstore.New(logging.Discard(), rdb, redisstore.WithDurable(true))
	t.Cleanup(func() { _ = store.Close() })
	return app.New(logging.Discard(), store, app.WithCacheTTL(cacheTTL), app.WithDurable(durable, store)), m
}

var (
	itemA = domain.ItemRef{Namespace: "articles", ID: "a1"}
	itemB = domain.ItemRef{Namespace: "articles", ID: "b2"}
)

func seededDurable() *fakeDurable {
	return &fakeDurable{
		items: map[domain.ItemRef]domain.ItemSnapshot{
			itemA: {Likers: []string{"u1", "u2", "u3"}, Metrics: map[string]int64{"views": 40}},
		},
		users: map[string]domain.UserSnapshot{
			"u1": {Following: []string{"u2", "u3"}},
			"u2": {Followers: []string{"u1"}},
			"u3": {Followers: []string{"u1"}},
		},
	}
}

// TestRebuildFromDurable: with Redis empty, reads and writes see the
// durable record's state; a user who liked per the record liking again
// changes nothing.
func TestRebuildFromDurable(t *testing.T) {
	for _, ttl := range []time.Duration{0, app.DefaultCacheTTL} {
		t.Run(fmt.Sprintf("cache=%v", ttl), func(t *testing.T) {
			d := seededDurable()
			s, m := rebuildEnv(t, d, ttl)
			views, err := s.GetCounts(ctx, "u2", []domain.ItemRef{itemA, itemB})
			if err != nil {
				t.Fatal(err)
			}
			if views[0].Counts.Likes != 3 || !maps.Equal(views[0].Counts.Metrics, map[string]int64{"views": 40}) || !views[0].ViewerLiked {
				t.Fatalf("item a = %+v; want 3 likes, views 40, liked", views[0])
			}
			if views[1].Counts.Likes != 0 || views[1].Counts.Metrics != nil || views[1].ViewerLiked {
				t.Fatalf("item b = %+v; want nothing", views[1])
			}
			r, err := s.Like(ctx, "u1", itemA)
			if err != nil || r != (domain.LikeResult{Changed: false, Count: 3}) {
				t.Fatalf("relike by u1 = %+v, %v; want unchanged, 3", r, err)
			}
			users, err := s.GetUserStats(ctx, "u1", []string{"u1", "u2", "u9"})
			if err != nil {
				t.Fatal(err)
			}
			if users[0].Counts != (domain.UserCounts{Following: 2}) || users[1].Counts != (domain.UserCounts{Followers: 1}) ||
				!users[1].ViewerFollows || users[2].ViewerFollows || users[2].Counts != (domain.UserCounts{}) {
				t.Fatalf("GetUserStats = %+v", users)
			}
			f, err := s.Follow(ctx, "u1", "u3")
			if err != nil || f != (domain.FollowResult{Changed: false, Following: 2, Followers: 1}) {
				t.Fatalf("refollow = %+v, %v", f, err)
			}
			// The loads happened once each (a, b, u1, u2, u9; u3 on the follow).
			if n := d.loads.Load(); n != 6 {
				t.Fatalf("%d loads; want 6", n)
			}
			// Lost again: rebuilt again, with a write that happened meanwhile in the record.
			m.FlushAll()
			d.items[itemA] = domain.ItemSnapshot{Likers: []string{"u1", "u2", "u3", "u4"}, Metrics: map[string]int64{"views": 41}}
			if r, err := s.Unlike(ctx, "u4", itemA); err != nil || r != (domain.LikeResult{Changed: true, Count: 3}) {
				t.Fatalf("unlike after second loss = %+v, %v", r, err)
			}
		})
	}
}

// TestRebuildFailureChangesNothing: when the durable record cannot be
// read, the request fails Unavailable, nothing is seeded, and a later
// request rebuilds.
func TestRebuildFailureChangesNothing(t *testing.T) {
	d := seededDurable()
	boom := errors.New("mysql down")
	d.fail.Store(&boom)
	s, m := rebuildEnv(t, d, 0)
	if _, err := s.Like(ctx, "u9", itemA); !errors.Is(err, domain.ErrUnavailable) || !errors.Is(err, boom) {
		t.Fatalf("Like with the record down: %v; want ErrUnavailable wrapping the cause", err)
	}
	if keys := m.Keys(); len(keys) != 0 {
		t.Fatalf("keys after a failed rebuild: %v", keys)
	}
	d.fail.Store(nil)
	if r, err := s.Like(ctx, "u9", itemA); err != nil || r != (domain.LikeResult{Changed: true, Count: 4}) {
		t.Fatalf("Like after recovery = %+v, %v", r, err)
	}
}

// TestConcurrentFirstAccessLoadsOnce: many concurrent first reads and
// writes of one missing item load it from the durable record exactly once,
// none sees a count below the record's, and every write counts.
func TestConcurrentFirstAccessLoadsOnce(t *testing.T) {
	const readers, writers = 40, 20
	d := seededDurable()
	d.gate = make(chan struct{})
	s, _ := rebuildEnv(t, d, 0) // no read cache: its own single-flight would hide the rebuild's
	var wg sync.WaitGroup
	errs := make(chan error, readers+writers)
	for i := range readers {
		wg.Go(func() {
			v, err := s.GetCounts(ctx, "", []domain.ItemRef{itemA})
			if err == nil && v[0].Counts.Likes < 3 {
				err = fmt.Errorf("reader %d saw %d likes, below the record's 3", i, v[0].Counts.Likes)
			}
			errs <- err
		})
	}
	for i := range writers {
		wg.Go(func() {
			r, err := s.Like(ctx, fmt.Sprintf("w%d", i), itemA)
			if err == nil && (!r.Changed || r.Count < 4) {
				err = fmt.Errorf("writer %d: %+v", i, r)
			}
			errs <- err
		})
	}
	// Release the load once every other request waits for it.
	testenv.Eventually(t, 10*time.Second, "every other request to wait for the rebuild", func() bool {
		return s.RebuildStats().Waiting >= readers+writers-1
	})
	close(d.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := d.loads.Load(); n != 1 {
		t.Fatalf("%d loads; want 1", n)
	}
	if st := s.RebuildStats(); st.Loads != 1 || st.Waiting != 0 {
		t.Fatalf("RebuildStats = %+v", st)
	}
	v, err := s.GetCounts(ctx, "", []domain.ItemRef{itemA})
	if err != nil || v[0].Counts.Likes != 3+writers {
		t.Fatalf("final = %+v, %v; want %d likes", v, err, 3+writers)
	}
}
