package reconcile_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/highgopress/highgopress/platform/durabledb"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/counter/domain"
	"github.com/highgopress/highgopress/services/counter/reconcile"
	"github.com/highgopress/highgopress/services/counter/redisstore"
)

// testDB is the Redis database this package's tests own and flush.
const testDB = 9

// record is a durable record held in memory: the counts and the
// snapshots a rebuild installs.
type record struct {
	items map[domain.ItemRef]domain.ItemSnapshot
	users map[string]domain.UserSnapshot
	loads int
}

func (r *record) Counts(context.Context) ([]durabledb.ItemCount, []durabledb.UserCount, error) {
	var items []durabledb.ItemCount
	for it, s := range r.items {
		items = append(items, durabledb.ItemCount{Namespace: it.Namespace, ItemID: it.ID, Metric: domain.LikesMetric, Value: int64(len(s.Likers))})
		for m, v := range s.Metrics {
			items = append(items, durabledb.ItemCount{Namespace: it.Namespace, ItemID: it.ID, Metric: m, Value: v})
		}
	}
	var users []durabledb.UserCount
	for u, s := range r.users {
		users = append(users, durabledb.UserCount{UserID: u, Followers: int64(len(s.Followers)), Following: int64(len(s.Following))})
	}
	return items, users, nil
}

func (r *record) LoadItem(_ context.Context, it domain.ItemRef) (domain.ItemSnapshot, error) {
	r.loads++
	return r.items[it], nil
}

func (r *record) LoadUser(_ context.Context, u string) (domain.UserSnapshot, error) {
	r.loads++
	return r.users[u], nil
}

type fixture struct {
	rdb    *redis.Client
	store  *redisstore.Store
	rec    *record
	a, b   domain.ItemRef
	newRec func(quiet error) *reconcile.Reconciler
}

// setup: the durable record holds two items and two users; Redis holds
// the same state, seeded (marked loaded) as the counter's rebuild leaves it.
func setup(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t), DB: testDB})
	t.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		t.Fatalf("FLUSHDB: %v", err)
	}
	store := redisstore.New(logging.Discard(), rdb, redisstore.WithDurable(true), redisstore.WithAbsentTTL(0))
	t.Cleanup(func() { _ = store.Close() })
	f := &fixture{rdb: rdb, store: store, a: domain.ItemRef{Namespace: "article", ID: "a"}, b: domain.ItemRef{Namespace: "article", ID: "b"}}
	f.rec = &record{
		items: map[domain.ItemRef]domain.ItemSnapshot{
			f.a: {Likers: []string{"u1", "u2", "u3"}, Metrics: map[string]int64{"views": 40}},
			f.b: {Likers: []string{"u2"}},
		},
		users: map[string]domain.UserSnapshot{
			"u1": {Following: []string{"u2"}},
			"u2": {Followers: []string{"u1"}},
		},
	}
	for it, s := range f.rec.items {
		if _, err := store.SeedItem(ctx, it, s); err != nil {
			t.Fatal(err)
		}
	}
	for u, s := range f.rec.users {
		if _, err := store.SeedUser(ctx, u, s); err != nil {
			t.Fatal(err)
		}
	}
	f.rec.loads = 0
	f.newRec = func(quiet error) *reconcile.Reconciler {
		return reconcile.New(logging.Discard(), rdb, store, f.rec, reconcile.WithRegisterer(nil),
			reconcile.WithQuiescent(func(context.Context) error { return quiet }))
	}
	return f
}

func check(t *testing.T, r *reconcile.Reconciler) reconcile.Report {
	t.Helper()
	rep, err := r.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestRepairRebuildsThroughTheSeed: a lost item and a lost user are
// rebuilt the counter's way (snapshot, seed script, loaded mark), and a
// differing count is corrected.
func TestRepairRebuildsThroughTheSeed(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	r := f.newRec(nil)
	if rep := check(t, r); len(rep.Drifts) != 0 || rep.Fields == 0 {
		t.Fatalf("consistent state reported %d drifts over %d fields", len(rep.Drifts), rep.Fields)
	}
	if err := f.rdb.HIncrBy(ctx, redisstore.CountsKey(f.a), "views", 3).Err(); err != nil {
		t.Fatal(err)
	}
	if err := f.rdb.Del(ctx, redisstore.CountsKey(f.b), redisstore.LikersKey(f.b),
		redisstore.UserKey("u1"), redisstore.FollowingKey("u1"), redisstore.FollowersKey("u1")).Err(); err != nil {
		t.Fatal(err)
	}
	// Unmarked state (what an eviction or a counter without a durable
	// record leaves) is not loaded either: a likers set of a lost user's
	// item is replaced.
	if err := f.rdb.SAdd(ctx, redisstore.LikersKey(f.b), "stale").Err(); err != nil {
		t.Fatal(err)
	}
	rep := check(t, r)
	if len(rep.Drifts) < 3 || rep.Abs() < 3 || !rep.Quiescent {
		t.Fatalf("drift not found: %+v", rep)
	}
	if n, err := r.Repair(ctx, rep); err != nil || n != 3 {
		t.Fatalf("repaired %d, want 3 (item, user, field): %v", n, err)
	}
	if rep := check(t, r); len(rep.Drifts) != 0 {
		t.Fatalf("after repair: %+v", rep.Drifts)
	}
	if f.rec.loads != 2 {
		t.Fatalf("%d snapshot loads, want 2", f.rec.loads)
	}
	for _, it := range []domain.ItemRef{f.a, f.b} {
		if ok, err := f.store.ItemLoaded(ctx, it); err != nil || !ok {
			t.Fatalf("%v loaded = %v, %v", it, ok, err)
		}
	}
	if ok, err := f.store.UserLoaded(ctx, "u1"); err != nil || !ok {
		t.Fatalf("u1 loaded = %v, %v", ok, err)
	}
	likers, _ := f.rdb.SMembers(ctx, redisstore.LikersKey(f.b)).Result()
	if !slices.Equal(likers, []string{"u2"}) {
		t.Fatalf("likers of the rebuilt item: %v, want [u2]", likers)
	}
	following, _ := f.rdb.SMembers(ctx, redisstore.FollowingKey("u1")).Result()
	if !slices.Equal(following, []string{"u2"}) {
		t.Fatalf("rebuilt following of u1: %v, want [u2]", following)
	}
	// The rebuilt state takes writes without another rebuild.
	if res, err := f.store.SetLike(ctx, "u9", f.b, true); err != nil || res != (domain.LikeResult{Changed: true, Count: 2}) {
		t.Fatalf("like after the rebuild = %+v, %v", res, err)
	}
}

// TestRepairNeverOverwritesInFlightOrConcurrentWrites: without quiescence
// a differing count is only reported and a lost item is not rebuilt; with
// it, the item is rebuilt and a write that lands between the check and
// the repair is kept.
func TestRepairNeverOverwritesInFlightOrConcurrentWrites(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	key := redisstore.CountsKey(f.a)
	if err := f.rdb.HIncrBy(ctx, key, "views", 1).Err(); err != nil { // an event still in flight
		t.Fatal(err)
	}
	busy := f.newRec(errors.New("outbox not empty"))
	rep := check(t, busy)
	if len(rep.Drifts) != 1 || rep.Quiescent {
		t.Fatalf("report %+v", rep)
	}
	if n, err := busy.Repair(ctx, rep); err != nil || n != 0 {
		t.Fatalf("repaired %d while not quiescent: %v", n, err)
	}
	before, _ := f.rdb.HGet(ctx, key, "views").Int64()

	if err := f.rdb.Del(ctx, redisstore.CountsKey(f.b), redisstore.LikersKey(f.b)).Err(); err != nil {
		t.Fatal(err)
	}
	rep = check(t, busy)
	if n, err := busy.Repair(ctx, rep); err != nil || n != 0 {
		t.Fatalf("rebuilt %d keys while not quiescent: %v", n, err)
	}
	if n := f.rdb.Exists(ctx, redisstore.CountsKey(f.b), redisstore.LikersKey(f.b)).Val(); n != 0 {
		t.Fatalf("%d keys of a lost item rebuilt while not quiescent", n)
	}

	quiet := f.newRec(nil)
	rep = check(t, quiet)
	if err := f.rdb.HIncrBy(ctx, key, "views", 1).Err(); err != nil { // concurrent write after the check
		t.Fatal(err)
	}
	if n, err := quiet.Repair(ctx, rep); err != nil || n != 1 {
		t.Fatalf("repair changed %d (want 1: the rebuild, not the field written meanwhile): %v", n, err)
	}
	if after, _ := f.rdb.HGet(ctx, key, "views").Int64(); after != before+1 {
		t.Fatalf("views %d, want %d", after, before+1)
	}
	if ok, _ := f.store.ItemLoaded(ctx, f.b); !ok {
		t.Fatal("lost item not rebuilt once quiescent")
	}
}
