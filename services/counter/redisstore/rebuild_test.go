package redisstore_test

import (
	"errors"
	"maps"
	"slices"
	"testing"

	"github.com/highgopress/highgopress/services/counter/domain"
	"github.com/highgopress/highgopress/services/counter/outbox"
	"github.com/highgopress/highgopress/services/counter/redisstore"
)

// notLoaded asserts that err is a *domain.NotLoadedError naming items and
// users.
func notLoaded(t *testing.T, what string, err error, items []domain.ItemRef, users []string) {
	t.Helper()
	var nl *domain.NotLoadedError
	if !errors.As(err, &nl) || !errors.Is(err, domain.ErrNotLoaded) {
		t.Fatalf("%s: err = %v; want a NotLoadedError", what, err)
	}
	if !slices.Equal(nl.Items, items) || !slices.Equal(nl.Users, users) {
		t.Fatalf("%s: not loaded items %v users %v; want %v %v", what, nl.Items, nl.Users, items, users)
	}
}

// TestMissingStateIsReportedAndUntouched: with a durable record, every
// operation on state without the loaded mark fails with NotLoadedError and
// changes nothing (no keys, no outbox entry).
func TestMissingStateIsReportedAndUntouched(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e env) {
		it := domain.ItemRef{Namespace: "n", ID: "a"}
		_, err := e.store.SetLike(ctx, "u1", it, true)
		notLoaded(t, "SetLike", err, []domain.ItemRef{it}, nil)
		_, err = e.store.Increment(ctx, "u1", domain.Increment{Item: it, Metric: "views", Delta: 1, IdempotencyKey: "key-00001"})
		notLoaded(t, "Increment", err, []domain.ItemRef{it}, nil)
		_, err = e.store.SetFollow(ctx, "a", "b", true)
		notLoaded(t, "SetFollow", err, nil, []string{"a", "b"})
		_, _, err = e.store.ReadItems(ctx, []domain.ItemRef{it}, "", nil)
		notLoaded(t, "ReadItems", err, []domain.ItemRef{it}, nil)
		_, _, err = e.store.ReadItems(ctx, nil, "u1", []domain.ItemRef{it})
		notLoaded(t, "ReadItems (viewer check)", err, []domain.ItemRef{it}, nil)
		_, _, err = e.store.ReadUsers(ctx, []string{"b"}, "a", []string{"b"})
		notLoaded(t, "ReadUsers", err, nil, []string{"b", "a"})
		if n, _ := e.rdb.DBSize(ctx).Result(); n != 0 {
			keys, _ := e.rdb.Keys(ctx, "*").Result()
			t.Fatalf("operations on missing state created keys %v", keys)
		}

		// Seeding b only: a is still missing, and the follow still changes nothing.
		if _, err := e.store.SeedUser(ctx, "b", domain.UserSnapshot{}); err != nil {
			t.Fatal(err)
		}
		_, err = e.store.SetFollow(ctx, "a", "b", true)
		notLoaded(t, "SetFollow with b loaded", err, nil, []string{"a"})
		if n, _ := e.rdb.XLen(ctx, outbox.Stream).Result(); n != 0 {
			t.Fatalf("outbox has %d entries", n)
		}
	}, redisstore.WithDurable(true))
}

// TestSeedItem: a seed installs likers, the like count and metrics once;
// later seeds change nothing; the loaded mark is never a metric; the state
// then behaves as if it had never been lost.
func TestSeedItem(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e env) {
		it := domain.ItemRef{Namespace: "n", ID: "a"}
		snap := domain.ItemSnapshot{Likers: []string{"u1", "u2", "u3"}, Metrics: map[string]int64{"views": 7, "shares": -2}}
		if r, err := e.store.SeedItem(ctx, it, snap); err != nil || r != redisstore.SeedInstalled {
			t.Fatalf("SeedItem = %d, %v", r, err)
		}
		// A second seed with other data (a slower instance) changes nothing.
		if r, err := e.store.SeedItem(ctx, it, domain.ItemSnapshot{Likers: []string{"x"}}); err != nil || r != redisstore.SeedSkipped {
			t.Fatalf("second SeedItem = %d, %v", r, err)
		}
		counts, liked, err := e.store.ReadItems(ctx, []domain.ItemRef{it}, "u2", []domain.ItemRef{it})
		if err != nil {
			t.Fatal(err)
		}
		want := domain.ItemCounts{Likes: 3, Metrics: map[string]int64{"views": 7, "shares": -2}}
		if counts[0].Likes != want.Likes || !maps.Equal(counts[0].Metrics, want.Metrics) || !liked[0] {
			t.Fatalf("after seed: %+v liked=%v; want %+v liked=true", counts[0], liked, want)
		}
		// A user who liked (per the durable record) liking again changes nothing.
		if r, err := e.store.SetLike(ctx, "u1", it, true); err != nil || r != (domain.LikeResult{Changed: false, Count: 3}) {
			t.Fatalf("relike = %+v, %v", r, err)
		}
		if r, err := e.store.SetLike(ctx, "u4", it, true); err != nil || r != (domain.LikeResult{Changed: true, Count: 4}) {
			t.Fatalf("new like = %+v, %v", r, err)
		}
		if v, err := e.store.Increment(ctx, "u1", domain.Increment{Item: it, Metric: "views", Delta: 3, IdempotencyKey: "key-00001"}); err != nil || v != 10 {
			t.Fatalf("Increment = %d, %v", v, err)
		}
	}, redisstore.WithDurable(true), redisstore.WithMaxMetrics(2))
}

// TestSeedItemMetricCap: the loaded mark does not count against the cap.
func TestSeedItemMetricCap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e env) {
		it := domain.ItemRef{Namespace: "n", ID: "a"}
		if _, err := e.store.SeedItem(ctx, it, domain.ItemSnapshot{Likers: []string{"u"}, Metrics: map[string]int64{"a": 1}}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.store.Increment(ctx, "u", domain.Increment{Item: it, Metric: "b", Delta: 1, IdempotencyKey: "key-00001"}); err != nil {
			t.Fatalf("second metric refused: %v", err)
		}
		_, err := e.store.Increment(ctx, "u", domain.Increment{Item: it, Metric: "c", Delta: 1, IdempotencyKey: "key-00002"})
		if !errors.Is(err, domain.ErrTooManyMetrics) {
			t.Fatalf("third metric: %v; want ErrTooManyMetrics", err)
		}
	}, redisstore.WithDurable(true), redisstore.WithMaxMetrics(2))
}

// TestSeedReplacesUnmarkedState: state without the loaded mark — complete
// (written by a counter without a durable record) or partial (a likers set
// without its hash) — is replaced by the snapshot, which is the durable
// record's state; nothing unmarked is adopted.
func TestSeedReplacesUnmarkedState(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e env) {
		it := domain.ItemRef{Namespace: "n", ID: "a"}
		e.rdb.HSet(ctx, redisstore.CountsKey(it), "likes", 1, "views", 5)
		e.rdb.SAdd(ctx, redisstore.LikersKey(it), "ahead")
		if r, err := e.store.SeedItem(ctx, it, domain.ItemSnapshot{Likers: []string{"u1", "u2"}, Metrics: map[string]int64{"views": 7}}); err != nil || r != redisstore.SeedInstalled {
			t.Fatalf("SeedItem over unmarked state = %d, %v", r, err)
		}
		counts, _, err := e.store.ReadItems(ctx, []domain.ItemRef{it}, "", nil)
		if err != nil || counts[0].Likes != 2 || counts[0].Metrics["views"] != 7 {
			t.Fatalf("after the seed = %+v, %v; want the snapshot (2 likes, 7 views)", counts, err)
		}
		m, _ := e.rdb.SMembers(ctx, redisstore.LikersKey(it)).Result()
		if slices.Sort(m); !slices.Equal(m, []string{"u1", "u2"}) {
			t.Fatalf("likers = %v; want [u1 u2]", m)
		}

		partial := domain.ItemRef{Namespace: "n", ID: "p"}
		e.rdb.SAdd(ctx, redisstore.LikersKey(partial), "stale")
		if r, err := e.store.SeedItem(ctx, partial, domain.ItemSnapshot{Likers: []string{"u1"}}); err != nil || r != redisstore.SeedInstalled {
			t.Fatalf("SeedItem over partial state = %d, %v", r, err)
		}
		if m, _ := e.rdb.SMembers(ctx, redisstore.LikersKey(partial)).Result(); !slices.Equal(m, []string{"u1"}) {
			t.Fatalf("likers = %v; want [u1]", m)
		}

		e.rdb.HSet(ctx, redisstore.UserKey("w"), "followers", 2)
		e.rdb.SAdd(ctx, redisstore.FollowersKey("w"), "y", "z")
		if r, err := e.store.SeedUser(ctx, "w", domain.UserSnapshot{Followers: []string{"x"}}); err != nil || r != redisstore.SeedInstalled {
			t.Fatalf("SeedUser over unmarked state = %d, %v", r, err)
		}
		if m, _ := e.rdb.SMembers(ctx, redisstore.FollowersKey("w")).Result(); !slices.Equal(m, []string{"x"}) {
			t.Fatalf("followers = %v; want [x]", m)
		}
		if n, _ := e.rdb.HGet(ctx, redisstore.UserKey("w"), "followers").Int(); n != 1 {
			t.Fatalf("followers count = %d; want 1", n)
		}
	}, redisstore.WithDurable(true))
}

// TestSeedUser installs follow sets and counts; follows then work.
func TestSeedUser(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e env) {
		big := make([]string, 2500) // more than one SADD chunk
		for i := range big {
			big[i] = "f" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676))
		}
		if r, err := e.store.SeedUser(ctx, "a", domain.UserSnapshot{Following: []string{"c"}, Followers: big}); err != nil || r != redisstore.SeedInstalled {
			t.Fatalf("SeedUser a = %d, %v", r, err)
		}
		if r, err := e.store.SeedUser(ctx, "b", domain.UserSnapshot{Followers: []string{"c"}}); err != nil || r != redisstore.SeedInstalled {
			t.Fatalf("SeedUser b = %d, %v", r, err)
		}
		if r, err := e.store.SeedUser(ctx, "b", domain.UserSnapshot{}); err != nil || r != redisstore.SeedSkipped {
			t.Fatalf("second SeedUser b = %d, %v", r, err)
		}
		counts, follows, err := e.store.ReadUsers(ctx, []string{"a", "b"}, "a", []string{"c", "b"})
		if err != nil {
			t.Fatal(err)
		}
		if counts[0] != (domain.UserCounts{Followers: 2500, Following: 1}) || counts[1] != (domain.UserCounts{Followers: 1}) ||
			!slices.Equal(follows, []bool{true, false}) {
			t.Fatalf("ReadUsers = %+v %v", counts, follows)
		}
		if n, _ := e.rdb.SCard(ctx, redisstore.FollowersKey("a")).Result(); n != 2500 {
			t.Fatalf("followers set of a has %d members", n)
		}
		if r, err := e.store.SetFollow(ctx, "a", "b", true); err != nil || r != (domain.FollowResult{Changed: true, Following: 2, Followers: 2}) {
			t.Fatalf("SetFollow = %+v, %v", r, err)
		}
	}, redisstore.WithDurable(true))
}
