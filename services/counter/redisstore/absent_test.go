package redisstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/counter/app"
	"github.com/highgopress/highgopress/services/counter/domain"
	"github.com/highgopress/highgopress/services/counter/redisstore"
)

// emptyDurable is a durable record that holds nothing and counts its loads.
type emptyDurable struct{ loads atomic.Int64 }

func (d *emptyDurable) LoadItem(context.Context, domain.ItemRef) (domain.ItemSnapshot, error) {
	d.loads.Add(1)
	return domain.ItemSnapshot{}, nil
}

func (d *emptyDurable) LoadUser(context.Context, string) (domain.UserSnapshot, error) {
	d.loads.Add(1)
	return domain.UserSnapshot{}, nil
}

// TestReadsOfNeverSeenStateLeaveOnlyExpiringKeys, on the real Redis:
// anonymous and viewer reads of items and users the durable record does not
// have answer zero and leave nothing permanent — every key they created has
// a TTL and all of them vanish —, repeated reads within the TTL do not ask
// the durable record again, and a write to such an item rebuilds it for
// real: its state is then permanent.
func TestReadsOfNeverSeenStateLeaveOnlyExpiringKeys(t *testing.T) {
	const ttl = 500 * time.Millisecond
	for _, b := range backends[:2] { // the real server: expiry must be Redis's own
		t.Run(b.name, func(t *testing.T) {
			e := b.new(t, redisstore.WithDurable(true), redisstore.WithSettleDelay(time.Hour), redisstore.WithAbsentTTL(ttl))
			d := &emptyDurable{}
			svc := app.New(logging.Discard(), e.store, app.WithCacheTTL(0), app.WithDurable(d, e.store))

			items := make([]domain.ItemRef, 50)
			for i := range items {
				items[i] = domain.ItemRef{Namespace: "article", ID: fmt.Sprintf("never-%d", i)}
			}
			users := []string{"ghost-1", "ghost-2", "ghost-2", "ghost-3"}
			read := func() {
				t.Helper()
				for _, viewer := range []string{"", "viewer-never-seen"} {
					got, err := svc.GetCounts(ctx, viewer, items)
					if err != nil {
						t.Fatalf("GetCounts as %q: %v", viewer, err)
					}
					for _, v := range got {
						if v.Counts.Likes != 0 || len(v.Counts.Metrics) != 0 || v.ViewerLiked {
							t.Fatalf("GetCounts of a never-seen item = %+v", v)
						}
					}
					st, err := svc.GetUserStats(ctx, viewer, users)
					if err != nil {
						t.Fatalf("GetUserStats as %q: %v", viewer, err)
					}
					for _, v := range st {
						if v.Counts != (domain.UserCounts{}) || v.ViewerFollows {
							t.Fatalf("GetUserStats of a never-seen user = %+v", v)
						}
					}
				}
			}
			read()
			loads := d.loads.Load()
			if want := int64(len(items) + 3 + 1); loads != want { // distinct users, and the viewer
				t.Fatalf("%d loads from the durable record; want %d", loads, want)
			}
			keys, err := e.rdb.Keys(ctx, "*").Result()
			if err != nil || len(keys) == 0 {
				t.Fatalf("KEYS: %v %v", keys, err)
			}
			for _, k := range keys {
				if pttl := e.rdb.PTTL(ctx, k).Val(); pttl <= 0 {
					t.Errorf("read of never-seen state left %s with PTTL %v", k, pttl)
				}
			}
			// Within the TTL the absent entries answer: no new loads.
			read()
			if n := d.loads.Load(); n != loads {
				t.Fatalf("reads within the absent TTL loaded %d more times", n-loads)
			}
			testenv.Eventually(t, 30*time.Second, "every key read into existence to expire", func() bool {
				return e.rdb.DBSize(ctx).Val() == 0
			})

			// A write to an absent item is rebuilt for real and stays.
			read()
			it := items[0]
			if r, err := svc.Like(ctx, "u1", it); err != nil || r != (domain.LikeResult{Changed: true, Count: 1}) {
				t.Fatalf("Like of an absent item = %+v, %v", r, err)
			}
			h := e.rdb.HGetAll(ctx, redisstore.CountsKey(it)).Val()
			if h[redisstore.LoadedField] != "1" || h[redisstore.AbsentField] != "" || h["likes"] != "1" {
				t.Fatalf("counts hash after the write = %v", h)
			}
			if pttl := e.rdb.PTTL(ctx, redisstore.CountsKey(it)).Val(); pttl != -1 {
				t.Fatalf("written item's counts hash has PTTL %v; want none (-1ms)", pttl)
			}
			if r, err := svc.Follow(ctx, "ghost-1", "ghost-2"); err != nil || !r.Changed || r.Following != 1 || r.Followers != 1 {
				t.Fatalf("Follow between absent users = %+v, %v", r, err)
			}
			for _, k := range []string{redisstore.UserKey("ghost-1"), redisstore.UserKey("ghost-2")} {
				if pttl := e.rdb.PTTL(ctx, k).Val(); pttl != -1 {
					t.Fatalf("%s after a follow has PTTL %v; want none", k, pttl)
				}
			}
			got, err := svc.GetCounts(ctx, "u1", []domain.ItemRef{it})
			if err != nil || got[0].Counts.Likes != 1 || !got[0].ViewerLiked {
				t.Fatalf("GetCounts after the write = %+v, %v", got, err)
			}
		})
	}
}
