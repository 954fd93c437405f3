package app_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/services/counter/app"
	"github.com/highgopress/highgopress/services/counter/domain"
)

// memStore is an in-memory Store recording its calls.
type memStore struct {
	mu         sync.Mutex
	likes      map[domain.ItemRef]map[string]bool
	follows    map[string]map[string]bool
	calls      int
	reads      int // ReadItems/ReadUsers calls that fetched counts
	checks     int // ReadItems/ReadUsers calls that only checked the viewer
	failWrites error
}

func newMem() *memStore {
	return &memStore{likes: map[domain.ItemRef]map[string]bool{}, follows: map[string]map[string]bool{}}
}

func (m *memStore) SetLike(_ context.Context, user string, it domain.ItemRef, like bool) (domain.LikeResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.failWrites != nil {
		return domain.LikeResult{}, m.failWrites
	}
	if m.likes[it] == nil {
		m.likes[it] = map[string]bool{}
	}
	changed := m.likes[it][user] != like
	if like {
		m.likes[it][user] = true
	} else {
		delete(m.likes[it], user)
	}
	return domain.LikeResult{Changed: changed, Count: int64(len(m.likes[it]))}, nil
}

func (m *memStore) Increment(context.Context, string, domain.Increment) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	return 1, nil
}

func (m *memStore) SetFollow(_ context.Context, a, b string, follow bool) (domain.FollowResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.follows[a] == nil {
		m.follows[a] = map[string]bool{}
	}
	changed := m.follows[a][b] != follow
	if follow {
		m.follows[a][b] = true
	} else {
		delete(m.follows[a], b)
	}
	return domain.FollowResult{Changed: changed}, nil
}

func (m *memStore) ReadItems(_ context.Context, fetch []domain.ItemRef, viewer string, check []domain.ItemRef) ([]domain.ItemCounts, []bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if len(fetch) > 0 {
		m.reads++
	} else {
		m.checks++
	}
	counts := make([]domain.ItemCounts, len(fetch))
	for i, it := range fetch {
		counts[i].Likes = int64(len(m.likes[it]))
	}
	var liked []bool
	if viewer != "" {
		liked = make([]bool, len(check))
		for i, it := range check {
			liked[i] = m.likes[it][viewer]
		}
	}
	return counts, liked, nil
}

func (m *memStore) ReadUsers(_ context.Context, fetch []string, viewer string, check []string) ([]domain.UserCounts, []bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	counts := make([]domain.UserCounts, len(fetch))
	var follows []bool
	if viewer != "" {
		follows = make([]bool, len(check))
		for i, u := range check {
			follows[i] = m.follows[viewer][u]
		}
	}
	return counts, follows, nil
}

var ctx = context.Background()

func TestInvalidRequestsNeverReachTheStore(t *testing.T) {
	m := newMem()
	s := app.New(logging.Discard(), m)
	bad := domain.ItemRef{Namespace: "a{b}", ID: "x"}
	errs := []error{}
	add := func(_ any, err error) { errs = append(errs, err) }
	add(s.Like(ctx, "", domain.ItemRef{Namespace: "a", ID: "b"}))
	add(s.Like(ctx, "u1", bad))
	add(s.Unlike(ctx, "u1", bad))
	add(s.Increment(ctx, "u1", domain.Increment{Item: bad, Metric: "views", Delta: 1, IdempotencyKey: "12345678"}))
	add(s.Follow(ctx, "u1", "u1"))
	add(s.Unfollow(ctx, "u1", ""))
	add(s.GetCounts(ctx, "", []domain.ItemRef{bad}))
	add(s.GetUserStats(ctx, "", nil))
	for i, err := range errs {
		if err == nil {
			t.Errorf("request %d accepted", i)
		}
	}
	if m.calls != 0 {
		t.Fatalf("store called %d times for invalid requests", m.calls)
	}
}

func TestCacheSemantics(t *testing.T) {
	m := newMem()
	s := app.New(logging.Discard(), m, app.WithCacheTTL(time.Hour))
	it := domain.ItemRef{Namespace: "n", ID: "a"}
	items := []domain.ItemRef{it, it}
	get := func(viewer string) []domain.ItemView {
		t.Helper()
		v, err := s.GetCounts(ctx, viewer, items)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	get("")
	get("")
	if m.reads != 1 {
		t.Fatalf("%d count reads for two identical requests; want 1", m.reads)
	}
	if _, err := s.Like(ctx, "u1", it); err != nil {
		t.Fatal(err)
	}
	if v := get("u1"); v[0].Counts.Likes != 1 || !v[0].ViewerLiked || !v[1].ViewerLiked {
		t.Fatalf("after own like: %+v", v)
	}
	checks := m.checks
	if v := get("u2"); v[0].Counts.Likes != 1 || v[0].ViewerLiked {
		t.Fatalf("another viewer: %+v", v)
	}
	if m.checks != checks+1 {
		t.Fatal("a cached read did not check the viewer's likes in the store")
	}
	// A failed write may still have been applied: the entry goes anyway.
	m.failWrites = errors.New("timeout")
	if _, err := s.Unlike(ctx, "u1", it); err == nil {
		t.Fatal("want the store's error")
	}
	reads := m.reads
	get("")
	if m.reads != reads+1 {
		t.Fatal("a failed write did not invalidate the cached entry")
	}
}
