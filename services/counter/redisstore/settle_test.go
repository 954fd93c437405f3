package redisstore_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/counter/domain"
	"github.com/highgopress/highgopress/services/counter/outbox"
	"github.com/highgopress/highgopress/services/counter/redisstore"
)

// streamMS returns the milliseconds part of a stream id.
func streamMS(t *testing.T, id string) int64 {
	t.Helper()
	ms, _, ok := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil {
		t.Fatalf("%q is not a stream id", id)
	}
	return n
}

// idLess compares stream ids "<ms>-<seq>".
func idLess(t *testing.T, a, b string) bool {
	t.Helper()
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	ai, _ := strconv.ParseUint(am, 10, 64)
	bi, _ := strconv.ParseUint(bm, 10, 64)
	if ai != bi {
		return ai < bi
	}
	aj, _ := strconv.ParseUint(as, 10, 64)
	bj, _ := strconv.ParseUint(bs, 10, 64)
	return aj < bj
}

func claimAll(t *testing.T, e env) []redisstore.SettleTarget {
	t.Helper()
	got, err := e.store.ClaimSettle(ctx, 100, time.Minute)
	if err != nil {
		t.Fatalf("ClaimSettle: %v", err)
	}
	return got
}

// claimN claims until n targets were handed out (they are due a
// millisecond after their rebuild).
func claimN(t *testing.T, e env, n int) []redisstore.SettleTarget {
	t.Helper()
	var got []redisstore.SettleTarget
	testenv.Eventually(t, 5*time.Second, "settle targets due", func() bool {
		got = append(got, claimAll(t, e)...)
		return len(got) >= n
	})
	if len(got) != n {
		t.Fatalf("claimed %v; want %d", got, n)
	}
	return got
}

func members(t *testing.T, rdb *redis.Client, key string) []string {
	t.Helper()
	m, err := rdb.SMembers(ctx, key).Result()
	if err != nil {
		t.Fatalf("SMEMBERS %s: %v", key, err)
	}
	slices.Sort(m)
	return m
}

func hget(t *testing.T, rdb *redis.Client, key, field string) string {
	t.Helper()
	v, err := rdb.HGet(ctx, key, field).Result()
	if err != nil && err != redis.Nil {
		t.Fatalf("HGET %s %s: %v", key, field, err)
	}
	return v
}

// TestSeedRecordsBoundaryAndQueues: a rebuild queues its settle hash with a
// boundary newer than every event before it (also when the outbox stream
// does not exist, as after a FLUSHALL: the boundary is in a later
// millisecond than the rebuild) and older than every event after it.
func TestSeedRecordsBoundaryAndQueues(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e env) {
		it := domain.ItemRef{Namespace: "n", ID: "a"}
		before := time.Now().UnixMilli()
		if _, err := e.store.SeedItem(ctx, it, domain.ItemSnapshot{Likers: []string{"u1"}, Metrics: map[string]int64{"views": 7}}); err != nil {
			t.Fatal(err)
		}
		b := hget(t, e.rdb, redisstore.SettleKey(it), "b")
		if b == "" {
			t.Fatal("the rebuild recorded no boundary")
		}
		if ms := streamMS(t, b); ms <= before-1000 {
			t.Fatalf("boundary %s is not after the rebuild (%d ms)", b, before)
		}
		if got := hget(t, e.rdb, redisstore.SettleKey(it), "m:views"); got != "7" {
			t.Fatalf("seeded views recorded as %q; want 7", got)
		}
		if n := e.rdb.XLen(ctx, outbox.Stream).Val(); n != 0 {
			t.Fatalf("the boundary left %d outbox entries", n)
		}
		// Not due before the delay.
		if got := claimAll(t, e); len(got) != 0 {
			t.Fatalf("claimed %v before the delay", got)
		}
		if _, err := e.store.SetLike(ctx, "u2", it, true); err != nil {
			t.Fatal(err)
		}
		ids := e.rdb.XRange(ctx, outbox.Stream, "-", "+").Val()
		if len(ids) != 1 || !idLess(t, b, ids[0].ID) {
			t.Fatalf("event after the rebuild %v is not newer than the boundary %s", ids, b)
		}

		// A second rebuild, of a user, while the stream holds events: its
		// boundary is newer than them.
		if _, err := e.store.SeedUser(ctx, "x", domain.UserSnapshot{}); err != nil {
			t.Fatal(err)
		}
		bu := hget(t, e.rdb, redisstore.UserSettleKey("x"), "b")
		if !idLess(t, ids[0].ID, bu) {
			t.Fatalf("user boundary %s is not newer than the earlier event %s", bu, ids[0].ID)
		}
		if n, _ := e.rdb.ZCard(ctx, redisstore.SettleQueue).Result(); n != 2 {
			t.Fatalf("settle queue holds %d entries; want 2", n)
		}
	}, redisstore.WithDurable(true), redisstore.WithSettleDelay(time.Hour))
}

// TestClaimPostponeAndStaleEntries: due entries are handed out once per
// lease with their boundary; postponed ones come back later; entries whose
// settle hash is gone are dropped.
func TestClaimPostponeAndStaleEntries(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e env) {
		a := domain.ItemRef{Namespace: "n", ID: "a"}
		if _, err := e.store.SeedItem(ctx, a, domain.ItemSnapshot{}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.store.SeedUser(ctx, "u:1", domain.UserSnapshot{}); err != nil {
			t.Fatal(err)
		}
		e.rdb.ZAdd(ctx, redisstore.SettleQueue, redis.Z{Score: 0, Member: redisstore.SettleKey(domain.ItemRef{Namespace: "n", ID: "gone"})})
		got := claimN(t, e, 2)
		for _, g := range got {
			if g.Boundary == "" || (g.Item != a && g.User != "u:1") {
				t.Fatalf("claimed %+v", g)
			}
		}
		if n := e.rdb.ZCard(ctx, redisstore.SettleQueue).Val(); n != 2 {
			t.Fatalf("queue holds %d entries; the stale one should be dropped", n)
		}
		if again := claimAll(t, e); len(again) != 0 {
			t.Fatalf("claimed %v again within the lease", again)
		}
		if err := e.store.PostponeSettle(ctx, got[:1], 0); err != nil {
			t.Fatal(err)
		}
		if again := claimN(t, e, 1); again[0].Key != got[0].Key {
			t.Fatalf("after postponing %s by 0 claimed %v", got[0].Key, again)
		}
	}, redisstore.WithDurable(true), redisstore.WithSettleDelay(time.Millisecond))
}

// TestSettleItemAppliesOlderEvents: users not touched since the rebuild get
// MySQL's state, touched users keep theirs, the like count follows the set,
// a metric gains the increments the rebuild missed; settling twice changes
// nothing more, and the state is no longer queued.
func TestSettleItemAppliesOlderEvents(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e env) {
		it := domain.ItemRef{Namespace: "n", ID: "a"}
		// MySQL at the rebuild: a and b like it, views = 10.
		if _, err := e.store.SeedItem(ctx, it, domain.ItemSnapshot{Likers: []string{"a", "b"}, Metrics: map[string]int64{"views": 10}}); err != nil {
			t.Fatal(err)
		}
		// After the rebuild: c likes (touched), a unlikes (touched), e
		// re-asserts a like Redis already has... e is not a liker: it is a
		// change. b re-asserts its like: no change, but touched and sent.
		for _, w := range []struct {
			user string
			like bool
		}{{"c", true}, {"a", false}, {"b", true}} {
			if _, err := e.store.SetLike(ctx, w.user, it, w.like); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.store.Increment(ctx, "c", domain.Increment{Item: it, Metric: "views", Delta: 2, IdempotencyKey: "key-00001"}); err != nil {
			t.Fatal(err)
		}
		if n := e.rdb.XLen(ctx, outbox.Stream).Val(); n != 4 {
			t.Fatalf("outbox has %d entries; want 4 (the re-asserted like of b included)", n)
		}
		got := claimN(t, e, 1)
		// MySQL once the older events arrived: b unliked (in flight at the
		// rebuild), d liked, a liked (older than a's unlike, which is not
		// in MySQL yet), c unliked (older); views 15 counting only older
		// increments.
		st := domain.ItemSettlement{
			Likes:   []domain.PairState{{User: "a", On: true}, {User: "b", On: false}, {User: "c", On: false}, {User: "d", On: true}},
			Metrics: map[string]int64{"views": 15, "shares": 4},
		}
		res, err := e.store.SettleItem(ctx, got[0], st)
		if err != nil {
			t.Fatal(err)
		}
		// b is touched: it keeps its like; d joins; a and c keep theirs.
		if want := []string{"b", "c", "d"}; !slices.Equal(members(t, e.rdb, redisstore.LikersKey(it)), want) {
			t.Fatalf("likers %v; want %v", members(t, e.rdb, redisstore.LikersKey(it)), want)
		}
		counts, _, err := e.store.ReadItems(ctx, []domain.ItemRef{it}, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if counts[0].Likes != 3 || counts[0].Metrics["views"] != 17 || counts[0].Metrics["shares"] != 4 {
			t.Fatalf("counts %+v; want likes 3, views 10+2+5 = 17, shares 4", counts[0])
		}
		if !res.Settled || res.Likes != 1 || res.Metrics != 2 {
			t.Fatalf("result %+v; want settled, likes +1, 2 metrics fixed", res)
		}
		if e.rdb.Exists(ctx, redisstore.SettleKey(it), redisstore.TouchedKey(it)).Val() != 0 || e.rdb.ZCard(ctx, redisstore.SettleQueue).Val() != 0 {
			t.Fatal("settle state left behind")
		}
		again, err := e.store.SettleItem(ctx, got[0], st)
		if err != nil || again.Settled {
			t.Fatalf("second settle: %+v, %v; want nothing done", again, err)
		}
		counts, _, _ = e.store.ReadItems(ctx, []domain.ItemRef{it}, "", nil)
		if counts[0].Metrics["views"] != 17 {
			t.Fatalf("views %d after a repeated settle", counts[0].Metrics["views"])
		}
		// Settled: a repeated like no longer goes to the outbox.
		before := e.rdb.XLen(ctx, outbox.Stream).Val()
		if _, err := e.store.SetLike(ctx, "b", it, true); err != nil {
			t.Fatal(err)
		}
		if n := e.rdb.XLen(ctx, outbox.Stream).Val(); n != before {
			t.Fatalf("a repeated like after settling appended to the outbox (%d → %d)", before, n)
		}
	}, redisstore.WithDurable(true), redisstore.WithSettleDelay(time.Millisecond))
}

// TestSettleItemInChunks: more pairs than one script call takes.
func TestSettleItemInChunks(t *testing.T) {
	e := realEnv(t, true, redisstore.WithDurable(true), redisstore.WithSettleDelay(time.Millisecond))
	it := domain.ItemRef{Namespace: "n", ID: "big"}
	if _, err := e.store.SeedItem(ctx, it, domain.ItemSnapshot{}); err != nil {
		t.Fatal(err)
	}
	var st domain.ItemSettlement
	var want []string
	for i := range 4500 {
		u := "u" + strconv.Itoa(10000+i)
		st.Likes = append(st.Likes, domain.PairState{User: u, On: i%3 != 0})
		if i%3 != 0 {
			want = append(want, u)
		}
	}
	got := claimN(t, e, 1)
	res, err := e.store.SettleItem(ctx, got[0], st)
	if err != nil || !res.Settled || res.Likes != int64(len(want)) {
		t.Fatalf("settle: %+v, %v; want %d likes", res, err, len(want))
	}
	if m := members(t, e.rdb, redisstore.LikersKey(it)); !slices.Equal(m, want) {
		t.Fatalf("likers: %d; want %d", len(m), len(want))
	}
	if n, _ := e.rdb.HGet(ctx, redisstore.CountsKey(it), "likes").Int64(); n != int64(len(want)) {
		t.Fatalf("likes %d; want %d", n, len(want))
	}
}

// TestSettleUserUpdatesBothSides: a user's untouched follow pairs take
// MySQL's state on both sides (the other user only when loaded); touched
// pairs keep theirs.
func TestSettleUserUpdatesBothSides(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e env) {
		for _, u := range []string{"x", "y", "z"} {
			if _, err := e.store.SeedUser(ctx, u, domain.UserSnapshot{}); err != nil {
				t.Fatal(err)
			}
		}
		// The rebuild of me had: me follows x; y follows me.
		if _, err := e.store.SeedUser(ctx, "me", domain.UserSnapshot{Following: []string{"x"}, Followers: []string{"y"}}); err != nil {
			t.Fatal(err)
		}
		// Mirror the other sides as their own rebuilds would have.
		e.rdb.SAdd(ctx, redisstore.FollowersKey("x"), "me")
		e.rdb.HSet(ctx, redisstore.UserKey("x"), "followers", 1)
		e.rdb.SAdd(ctx, redisstore.FollowingKey("y"), "me")
		e.rdb.HSet(ctx, redisstore.UserKey("y"), "following", 1)
		// After the rebuild: me follows z (touched).
		if _, err := e.store.SetFollow(ctx, "me", "z", true); err != nil {
			t.Fatal(err)
		}
		var target redisstore.SettleTarget
		for _, g := range claimN(t, e, 4) {
			if g.User == "me" {
				target = g
			}
		}
		if target.User == "" {
			t.Fatal("me is not queued")
		}
		// MySQL once older events arrived: me unfollowed x, z is off
		// (older), w (not loaded) follows me, y unfollowed me.
		st := domain.UserSettlement{
			Following: []domain.PairState{{User: "x", On: false}, {User: "z", On: false}},
			Followers: []domain.PairState{{User: "w", On: true}, {User: "y", On: false}},
		}
		res, err := e.store.SettleUser(ctx, target, st)
		if err != nil || !res.Settled || res.Following != -1 || res.Followers != 0 {
			t.Fatalf("settle: %+v, %v; want following -1, followers +1-1", res, err)
		}
		check := func(key string, want ...string) {
			t.Helper()
			if got := members(t, e.rdb, key); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
				t.Fatalf("%s = %v; want %v", key, got, want)
			}
		}
		check(redisstore.FollowingKey("me"), "z")
		check(redisstore.FollowersKey("me"), "w")
		check(redisstore.FollowersKey("x"))
		check(redisstore.FollowingKey("y"))
		check(redisstore.FollowersKey("z"), "me")
		if e.rdb.Exists(ctx, redisstore.FollowingKey("w")).Val() != 0 {
			t.Fatal("settling wrote state of w, which is not loaded")
		}
		users, _, err := e.store.ReadUsers(ctx, []string{"me", "x", "y"}, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if users[0] != (domain.UserCounts{Following: 1, Followers: 1}) || users[1].Followers != 0 || users[2].Following != 0 {
			t.Fatalf("counts me %+v x %+v y %+v", users[0], users[1], users[2])
		}
	}, redisstore.WithDurable(true), redisstore.WithSettleDelay(time.Millisecond))
}

// TestNoSettleStateWithoutDelay: without a settle delay rebuilds are not
// queued and writes record nothing.
func TestNoSettleStateWithoutDelay(t *testing.T) {
	e := realEnv(t, true, redisstore.WithDurable(true))
	it := domain.ItemRef{Namespace: "n", ID: "a"}
	if _, err := e.store.SeedItem(ctx, it, domain.ItemSnapshot{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.SetLike(ctx, "u", it, true); err != nil {
		t.Fatal(err)
	}
	if n := e.rdb.Exists(ctx, redisstore.SettleKey(it), redisstore.TouchedKey(it), redisstore.SettleQueue).Val(); n != 0 {
		t.Fatalf("%d settle keys exist", n)
	}
}

// TestFollowKeepsCountsEqualToSets: when the two sides of a pair disagree
// (a and b rebuilt from MySQL at different moments), a follow sets both and
// each count follows its own set.
func TestFollowKeepsCountsEqualToSets(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e env) {
		if _, err := e.store.SeedUser(ctx, "a", domain.UserSnapshot{}); err != nil {
			t.Fatal(err)
		}
		// b's rebuild already saw a's follow; a's did not.
		if _, err := e.store.SeedUser(ctx, "b", domain.UserSnapshot{Followers: []string{"a"}}); err != nil {
			t.Fatal(err)
		}
		r, err := e.store.SetFollow(ctx, "a", "b", true)
		if err != nil {
			t.Fatal(err)
		}
		if r != (domain.FollowResult{Changed: true, Following: 1, Followers: 1}) {
			t.Fatalf("follow = %+v; want changed, following 1, followers 1", r)
		}
		// Now a's side has it and b's does not: an unfollow clears both.
		e.rdb.SRem(ctx, redisstore.FollowersKey("b"), "a")
		e.rdb.HSet(ctx, redisstore.UserKey("b"), "followers", 0)
		r, err = e.store.SetFollow(ctx, "a", "b", false)
		if err != nil {
			t.Fatal(err)
		}
		if r != (domain.FollowResult{Changed: true, Following: 0, Followers: 0}) {
			t.Fatalf("unfollow = %+v; want changed, 0, 0", r)
		}
		if n := e.rdb.XLen(ctx, outbox.Stream).Val(); n != 2 {
			t.Fatalf("outbox has %d entries; want 2", n)
		}
	}, redisstore.WithDurable(true))
}

// TestSettleLargeMetricsExactly: corrections are computed in 64-bit
// integers, not in Lua's doubles (which cannot hold 2^53+1).
func TestSettleLargeMetricsExactly(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e env) {
		it := domain.ItemRef{Namespace: "n", ID: "big"}
		const installed = int64(1)<<53 + 1
		if _, err := e.store.SeedItem(ctx, it, domain.ItemSnapshot{Metrics: map[string]int64{"views": installed}}); err != nil {
			t.Fatal(err)
		}
		got := claimN(t, e, 1)
		res, err := e.store.SettleItem(ctx, got[0], domain.ItemSettlement{Metrics: map[string]int64{"views": installed + 2}})
		if err != nil || !res.Settled {
			t.Fatalf("settle: %+v, %v", res, err)
		}
		if v, _ := e.rdb.HGet(ctx, redisstore.CountsKey(it), "views").Int64(); v != installed+2 {
			t.Fatalf("views = %d; want %d", v, installed+2)
		}
	}, redisstore.WithDurable(true), redisstore.WithSettleDelay(time.Millisecond))
}

// TestSettleDropsStateWhoseItemIsGone: when the item's state disappeared
// (evicted) while its settle state survived, settling writes nothing (no
// partial hash) and drops the settle state.
func TestSettleDropsStateWhoseItemIsGone(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e env) {
		it := domain.ItemRef{Namespace: "n", ID: "gone"}
		if _, err := e.store.SeedItem(ctx, it, domain.ItemSnapshot{Likers: []string{"a"}}); err != nil {
			t.Fatal(err)
		}
		got := claimN(t, e, 1)
		e.rdb.Del(ctx, redisstore.CountsKey(it), redisstore.LikersKey(it))
		res, err := e.store.SettleItem(ctx, got[0], domain.ItemSettlement{Likes: []domain.PairState{{User: "b", On: true}}})
		if err != nil || res.Settled {
			t.Fatalf("settle: %+v, %v; want nothing settled", res, err)
		}
		if n := e.rdb.Exists(ctx, redisstore.CountsKey(it), redisstore.LikersKey(it), redisstore.SettleKey(it)).Val(); n != 0 {
			t.Fatalf("%d keys left; want none", n)
		}
		if n := e.rdb.ZCard(ctx, redisstore.SettleQueue).Val(); n != 0 {
			t.Fatalf("settle queue holds %d", n)
		}
	}, redisstore.WithDurable(true), redisstore.WithSettleDelay(time.Millisecond))
}

// TestBoundaryAfterDataLoss: the lost stream's ids may run a millisecond
// ahead of the clock (boundaries of earlier rebuilds); after Redis lost its
// data the first boundary starts a second ahead, above all of them.
func TestBoundaryAfterDataLoss(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e env) {
		a := domain.ItemRef{Namespace: "n", ID: "a"}
		// A Redis that has been numbering its stream for a while.
		e.rdb.Set(ctx, outbox.Stream+":epoch", "1", 0)
		if _, err := e.store.SeedItem(ctx, a, domain.ItemSnapshot{}); err != nil {
			t.Fatal(err)
		}
		first := hget(t, e.rdb, redisstore.SettleKey(a), "b")
		// Events numbered after that boundary, in its millisecond.
		last := first
		for range 3 {
			last = e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: outbox.Stream, Values: []string{"k", "like"}}).Val()
		}
		if err := e.rdb.FlushDB(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := e.store.SeedItem(ctx, a, domain.ItemSnapshot{}); err != nil {
			t.Fatal(err)
		}
		b := hget(t, e.rdb, redisstore.SettleKey(a), "b")
		if !idLess(t, last, b) || streamMS(t, b)-streamMS(t, first) < 900 {
			t.Fatalf("boundary after the loss %s; want a second above the lost ids (last %s)", b, last)
		}
	}, redisstore.WithDurable(true), redisstore.WithSettleDelay(time.Hour))
}
