package reconcile_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/consumer"
	"github.com/highgopress/highgopress/services/consumer/internal/pipetest"
	"github.com/highgopress/highgopress/services/consumer/migrations"
	"github.com/highgopress/highgopress/services/consumer/reconcile"
	"github.com/highgopress/highgopress/services/consumer/sink"
	"github.com/highgopress/highgopress/services/counter/domain"
	"github.com/highgopress/highgopress/services/counter/redisstore"
	"github.com/highgopress/highgopress/services/counter/relay"
)

// fixture: MySQL holds an applied random history; Redis holds the same
// state, as the counter would have written it.
type fixture struct {
	rdb    *redis.Client
	want   pipetest.State
	items  []domain.ItemRef
	users  []string
	likers map[domain.ItemRef][]string
	newRec func(quiet error) *reconcile.Reconciler
}

func setup(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	dsn := pipetest.Database(t, testenv.MySQLDSN(t))
	if _, err := migrations.Up(ctx, logging.Discard(), dsn); err != nil {
		t.Fatal(err)
	}
	conn, err := consumer.OpenDB(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { _ = rdb.Close() })

	o := pipetest.NewOracle(9)
	o.Prefix = "rc" + pipetest.Suffix() + "-"
	ops := o.Generate(3000, 30, 10)
	evs := make([]*eventsv1.Event, len(ops))
	for i, op := range ops {
		if evs[i], err = relay.Convert(strconv.Itoa(1700000000000+i)+"-0", op.Fields()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sink.New(logging.Discard(), conn).Apply(ctx, evs, nil); err != nil {
		t.Fatal(err)
	}
	f := &fixture{rdb: rdb, want: o.Want(), likers: map[domain.ItemRef][]string{}}
	var keys []string
	pipe := rdb.Pipeline()
	seenItem := map[domain.ItemRef]bool{}
	for k, v := range f.want.Counts {
		p := strings.SplitN(k, "/", 3)
		it := domain.ItemRef{Namespace: p[0], ID: p[1]}
		pipe.HSet(ctx, redisstore.CountsKey(it), p[2], v)
		keys = append(keys, redisstore.CountsKey(it), redisstore.LikersKey(it))
		if !seenItem[it] {
			seenItem[it] = true
			f.items = append(f.items, it)
		}
	}
	for k := range f.want.Likes {
		p := strings.SplitN(k, "/", 3)
		it := domain.ItemRef{Namespace: p[0], ID: p[1]}
		pipe.SAdd(ctx, redisstore.LikersKey(it), p[2])
		f.likers[it] = append(f.likers[it], p[2])
	}
	for u, c := range f.want.Users {
		pipe.HSet(ctx, redisstore.UserKey(u), "followers", c[0], "following", c[1])
		keys = append(keys, redisstore.UserKey(u), redisstore.FollowingKey(u), redisstore.FollowersKey(u))
		f.users = append(f.users, u)
	}
	for k := range f.want.Follows {
		p := strings.SplitN(k, "/", 2)
		pipe.SAdd(ctx, redisstore.FollowingKey(p[0]), p[1])
		pipe.SAdd(ctx, redisstore.FollowersKey(p[1]), p[0])
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Del(context.Background(), keys...).Err() })
	slices.SortFunc(f.items, func(a, b domain.ItemRef) int { return strings.Compare(a.Namespace+a.ID, b.Namespace+b.ID) })
	slices.Sort(f.users)
	f.newRec = func(quiet error) *reconcile.Reconciler {
		return reconcile.New(logging.Discard(), rdb, conn, reconcile.WithRegisterer(nil),
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

func TestRepairsDriftAndLostKeys(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	r := f.newRec(nil)
	if rep := check(t, r); len(rep.Drifts) != 0 || rep.Fields == 0 {
		t.Fatalf("consistent state reported %d drifts over %d fields", len(rep.Drifts), rep.Fields)
	}
	// Drift: a count off by 3; a lost item (hash and likers set); a lost user.
	it, lost := f.items[0], f.items[1]
	if len(f.likers[lost]) == 0 {
		for _, cand := range f.items[1:] {
			if len(f.likers[cand]) > 0 {
				lost = cand
				break
			}
		}
	}
	field := "likes"
	if err := f.rdb.HIncrBy(ctx, redisstore.CountsKey(it), field, 3).Err(); err != nil {
		t.Fatal(err)
	}
	user := f.users[0]
	if err := f.rdb.Del(ctx, redisstore.CountsKey(lost), redisstore.LikersKey(lost),
		redisstore.UserKey(user), redisstore.FollowingKey(user), redisstore.FollowersKey(user)).Err(); err != nil {
		t.Fatal(err)
	}
	rep := check(t, r)
	if len(rep.Drifts) < 3 || rep.Abs() < 3 || !rep.Quiescent {
		t.Fatalf("drift not found: %+v", rep)
	}
	if n, err := r.Repair(ctx, rep); err != nil || n < 3 {
		t.Fatalf("repaired %d: %v", n, err)
	}
	if rep := check(t, r); len(rep.Drifts) != 0 {
		t.Fatalf("after repair: %+v", rep.Drifts)
	}
	got, err := f.rdb.SMembers(ctx, redisstore.LikersKey(lost)).Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(f.likers[lost]))
	if !slices.Equal(got, want) {
		t.Fatalf("likers of the rebuilt item: %v, want %v", got, want)
	}
	var following []string
	for k := range f.want.Follows {
		if p := strings.SplitN(k, "/", 2); p[0] == user {
			following = append(following, p[1])
		}
	}
	gotFollowing, _ := f.rdb.SMembers(ctx, redisstore.FollowingKey(user)).Result()
	if len(gotFollowing) != len(following) {
		t.Fatalf("rebuilt following of %s: %v, want %v", user, gotFollowing, following)
	}
}

// TestRepairNeverOverwritesInFlightOrConcurrentWrites: without quiescence a
// differing count is only reported and a lost item is not rebuilt; with it,
// the item is rebuilt and a write that lands between the check and the
// repair is kept.
func TestRepairNeverOverwritesInFlightOrConcurrentWrites(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	it := f.items[0]
	key := redisstore.CountsKey(it)
	if err := f.rdb.HIncrBy(ctx, key, "likes", 1).Err(); err != nil { // an event still in flight
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
	before, _ := f.rdb.HGet(ctx, key, "likes").Int64()

	// A missing item is not rebuilt either: events in flight would be
	// missing from the rebuild.
	lost := f.items[1]
	if err := f.rdb.Del(ctx, redisstore.CountsKey(lost), redisstore.LikersKey(lost)).Err(); err != nil {
		t.Fatal(err)
	}
	rep = check(t, busy)
	if n, err := busy.Repair(ctx, rep); err != nil || n != 0 {
		t.Fatalf("rebuilt %d keys while not quiescent: %v", n, err)
	}
	if n := f.rdb.Exists(ctx, redisstore.CountsKey(lost), redisstore.LikersKey(lost)).Val(); n != 0 {
		t.Fatalf("%d keys of a lost item rebuilt while not quiescent", n)
	}

	quiet := f.newRec(nil)
	rep = check(t, quiet)
	if err := f.rdb.HIncrBy(ctx, key, "likes", 1).Err(); err != nil { // concurrent write after the check
		t.Fatal(err)
	}
	if n, err := quiet.Repair(ctx, rep); err != nil || n != 1 {
		t.Fatalf("repair overwrote a concurrent write (changed %d): %v", n, err)
	}
	if after, _ := f.rdb.HGet(ctx, key, "likes").Int64(); after != before+1 {
		t.Fatalf("likes %d, want %d", after, before+1)
	}
}
