package counter_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/redis/go-redis/v9"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/identity"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/platform/tracecontext"
	"github.com/highgopress/highgopress/services/counter"
	"github.com/highgopress/highgopress/services/counter/domain"
	"github.com/highgopress/highgopress/services/counter/redisstore"
)

var bg = context.Background()

func TestEveryRPC(t *testing.T) {
	for _, p := range rpctest.Protocols {
		t.Run(p.Name, func(t *testing.T) {
			e := newEnv(t)
			cs, fs := e.counters(p), e.follows(p)
			item, other := ref("articles", "a-1"), ref("comments", "c:9")

			like := func(user string, want bool, count int64) {
				t.Helper()
				res, err := cs.Like(bg, as(e, user, &counterv1.LikeRequest{Item: item}))
				if err != nil || res.Msg.Changed != want || res.Msg.Count != count {
					t.Fatalf("Like as %s = %v, %v; want changed=%v count=%d", user, res, err, want, count)
				}
			}
			unlike := func(user string, want bool, count int64) {
				t.Helper()
				res, err := cs.Unlike(bg, as(e, user, &counterv1.UnlikeRequest{Item: item}))
				if err != nil || res.Msg.Changed != want || res.Msg.Count != count {
					t.Fatalf("Unlike as %s = %v, %v; want changed=%v count=%d", user, res, err, want, count)
				}
			}
			like("u1", true, 1)
			like("u1", false, 1)
			like("u2", true, 2)

			counts := func(viewer string) []*counterv1.ItemCount {
				t.Helper()
				res, err := cs.GetCounts(bg, as(e, viewer, &counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item, other}}))
				if err != nil || len(res.Msg.Counts) != 2 {
					t.Fatalf("GetCounts as %q = %v, %v", viewer, res, err)
				}
				for i, want := range []*counterv1.ItemRef{item, other} {
					if got := res.Msg.Counts[i].Item; got.GetNamespace() != want.Namespace || got.GetId() != want.Id {
						t.Fatalf("GetCounts[%d] names %v; want %v", i, got, want)
					}
				}
				return res.Msg.Counts
			}
			if c := counts("u1"); c[0].Likes != 2 || !c[0].ViewerLiked || c[1].Likes != 0 || c[1].ViewerLiked {
				t.Fatalf("GetCounts as u1 = %v", c)
			}
			if c := counts(""); c[0].Likes != 2 || c[0].ViewerLiked {
				t.Fatalf("anonymous GetCounts = %v", c)
			}
			if c := counts("u3"); c[0].Likes != 2 || c[0].ViewerLiked {
				t.Fatalf("GetCounts as u3 = %v", c)
			}
			unlike("u2", true, 1)
			unlike("u2", false, 1)

			incr := func(metric string, delta int64, key string) (int64, error) {
				res, err := cs.Increment(bg, as(e, "u1", &counterv1.IncrementRequest{
					Item: item, Metric: metric, Delta: delta, IdempotencyKey: key,
				}))
				if err != nil {
					return 0, err
				}
				return res.Msg.Value, nil
			}
			for range 2 {
				if v, err := incr("views", 3, "req-00001"); err != nil || v != 3 {
					t.Fatalf("Increment = %d, %v; want 3", v, err)
				}
			}
			_, err := incr("views", 4, "req-00001")
			wantCode(t, "Increment reusing a key", err, connect.CodeAlreadyExists, "different parameters")
			if v, err := incr("shares", 1, "req-00002"); err != nil || v != 1 {
				t.Fatalf("Increment shares = %d, %v", v, err)
			}
			if c := counts("u1"); c[0].Likes != 1 || !c[0].ViewerLiked || !maps.Equal(c[0].Metrics, map[string]int64{"views": 3, "shares": 1}) {
				t.Fatalf("GetCounts after Increment = %v", c)
			}

			follow := func(a, b string, want bool, following, followers int64) {
				t.Helper()
				res, err := fs.Follow(bg, as(e, a, &counterv1.FollowRequest{UserId: b}))
				if err != nil || res.Msg.Changed != want || res.Msg.Following != following || res.Msg.Followers != followers {
					t.Fatalf("Follow %s→%s = %v, %v; want %v %d %d", a, b, res, err, want, following, followers)
				}
			}
			follow("u1", "u2", true, 1, 1)
			follow("u1", "u2", false, 1, 1)
			follow("u3", "u2", true, 1, 2)

			stats := func(viewer string) []*counterv1.UserStats {
				t.Helper()
				res, err := fs.GetUserStats(bg, as(e, viewer, &counterv1.GetUserStatsRequest{UserIds: []string{"u2", "u1", "nobody"}}))
				if err != nil || len(res.Msg.Stats) != 3 {
					t.Fatalf("GetUserStats = %v, %v", res, err)
				}
				return res.Msg.Stats
			}
			s := stats("u1")
			if s[0].UserId != "u2" || s[0].Followers != 2 || s[0].Following != 0 || !s[0].ViewerFollows ||
				s[1].UserId != "u1" || s[1].Following != 1 || s[1].ViewerFollows || s[2].Followers != 0 || s[2].ViewerFollows {
				t.Fatalf("GetUserStats as u1 = %v", s)
			}
			if s := stats(""); s[0].Followers != 2 || s[0].ViewerFollows {
				t.Fatalf("anonymous GetUserStats = %v", s)
			}

			res, err := fs.Unfollow(bg, as(e, "u1", &counterv1.UnfollowRequest{UserId: "u2"}))
			if err != nil || !res.Msg.Changed || res.Msg.Following != 0 || res.Msg.Followers != 1 {
				t.Fatalf("Unfollow = %v, %v", res, err)
			}
			res, err = fs.Unfollow(bg, as(e, "u1", &counterv1.UnfollowRequest{UserId: "u2"}))
			if err != nil || res.Msg.Changed || res.Msg.Following != 0 || res.Msg.Followers != 1 {
				t.Fatalf("second Unfollow = %v, %v", res, err)
			}
			if s := stats("u1"); s[0].Followers != 1 || s[0].ViewerFollows {
				t.Fatalf("GetUserStats after Unfollow = %v", s)
			}
		})
	}
}

// TestOutbox: exactly the writes that change state append one outbox entry
// each, with the W3C traceparent the request came with (or a new one).
func TestOutbox(t *testing.T) {
	e := newEnv(t)
	p := rpctest.Protocols[0]
	cs, fs := e.counters(p), e.follows(p)
	item := ref("articles", "a1")
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	steps := []struct {
		name string
		call func() error
		want map[string]any // nil: no entry
	}{
		{"like", func() error {
			req := as(e, "u1", &counterv1.LikeRequest{Item: item})
			req.Header().Set(tracecontext.Header, traceparent)
			_, err := cs.Like(bg, req)
			return err
		}, map[string]any{"k": "like", "u": "u1", "ns": "articles", "id": "a1", "d": "1", "tp": traceparent}},
		{"like again", func() error { _, err := cs.Like(bg, as(e, "u1", &counterv1.LikeRequest{Item: item})); return err }, nil},
		{"unlike", func() error { _, err := cs.Unlike(bg, as(e, "u1", &counterv1.UnlikeRequest{Item: item})); return err },
			map[string]any{"k": "unlike", "u": "u1", "ns": "articles", "id": "a1", "d": "-1"}},
		{"unlike again", func() error {
			_, err := cs.Unlike(bg, as(e, "u1", &counterv1.UnlikeRequest{Item: item}))
			return err
		}, nil},
		{"increment", func() error {
			_, err := cs.Increment(bg, as(e, "u1", &counterv1.IncrementRequest{Item: item, Metric: "views", Delta: -2, IdempotencyKey: "idem-0001"}))
			return err
		}, map[string]any{"k": "incr", "u": "u1", "ns": "articles", "id": "a1", "m": "views", "d": "-2", "ik": "idem-0001"}},
		{"increment repeated", func() error {
			_, err := cs.Increment(bg, as(e, "u1", &counterv1.IncrementRequest{Item: item, Metric: "views", Delta: -2, IdempotencyKey: "idem-0001"}))
			return err
		}, nil},
		{"follow", func() error { _, err := fs.Follow(bg, as(e, "u1", &counterv1.FollowRequest{UserId: "u2"})); return err },
			map[string]any{"k": "follow", "u": "u1", "t": "u2", "d": "1"}},
		{"follow again", func() error { _, err := fs.Follow(bg, as(e, "u1", &counterv1.FollowRequest{UserId: "u2"})); return err }, nil},
		{"unfollow", func() error {
			_, err := fs.Unfollow(bg, as(e, "u1", &counterv1.UnfollowRequest{UserId: "u2"}))
			return err
		},
			map[string]any{"k": "unfollow", "u": "u1", "t": "u2", "d": "-1"}},
		{"unfollow again", func() error {
			_, err := fs.Unfollow(bg, as(e, "u1", &counterv1.UnfollowRequest{UserId: "u2"}))
			return err
		}, nil},
		{"reads", func() error {
			if _, err := cs.GetCounts(bg, as(e, "u1", &counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item}})); err != nil {
				return err
			}
			_, err := fs.GetUserStats(bg, as(e, "u1", &counterv1.GetUserStatsRequest{UserIds: []string{"u2"}}))
			return err
		}, nil},
	}
	for _, s := range steps {
		before := e.outboxLen(t)
		if err := s.call(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		after := e.outboxLen(t)
		if s.want == nil {
			if after != before {
				t.Fatalf("%s appended %d outbox entries; want none", s.name, after-before)
			}
			continue
		}
		if after != before+1 {
			t.Fatalf("%s appended %d outbox entries; want 1", s.name, after-before)
		}
		got := e.lastOutbox(t)
		// A request without a traceparent gets a new one.
		if _, ok := s.want["tp"]; !ok {
			if tp, _ := got["tp"].(string); !tracecontext.Valid(tp) {
				t.Fatalf("%s: outbox entry %v has no valid traceparent", s.name, got)
			}
			delete(got, "tp")
		}
		if !maps.Equal(got, s.want) {
			t.Fatalf("%s: outbox entry %v; want %v", s.name, got, s.want)
		}
	}
}

// TestConcurrentLikes sends every like of 100 users × 50 items three times
// at once, then runs like/unlike loops, with batching on and off.
func TestConcurrentLikes(t *testing.T) {
	const users, items, copies, inflight = 100, 50, 3, 64
	for _, batching := range []bool{true, false} {
		t.Run(fmt.Sprintf("batching=%v", batching), func(t *testing.T) {
			e := newEnv(t, counter.WithBatching(batching))
			clients := make([]interface {
				like(u string, it *counterv1.ItemRef) (*counterv1.LikeResponse, error)
				unlike(u string, it *counterv1.ItemRef) (*counterv1.UnlikeResponse, error)
			}, len(rpctest.Protocols))
			for i, p := range rpctest.Protocols {
				clients[i] = caller{e: e, p: p}
			}
			item := func(i int) *counterv1.ItemRef { return ref("articles", fmt.Sprintf("item-%d", i)) }
			user := func(u int) string { return fmt.Sprintf("user:%d", u) }

			var changed [users][items]atomic.Int32
			type task struct{ u, i int }
			tasks := make(chan task)
			var wg sync.WaitGroup
			errs := make(chan error, inflight)
			for range inflight {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for tk := range tasks {
						res, err := clients[tk.u%len(clients)].like(user(tk.u), item(tk.i))
						if err != nil {
							select {
							case errs <- fmt.Errorf("Like(%d, %d): %w", tk.u, tk.i, err):
							default:
							}
							continue
						}
						if res.Changed {
							changed[tk.u][tk.i].Add(1)
						}
					}
				}()
			}
			// The three copies of one like are consecutive, so different
			// workers send them at the same time.
			for u := range users {
				for i := range items {
					for range copies {
						tasks <- task{u, i}
					}
				}
			}
			close(tasks)
			waitGroup(t, &wg, "the likes")
			select {
			case err := <-errs:
				t.Fatal(err)
			default:
			}
			for u := range users {
				for i := range items {
					if n := changed[u][i].Load(); n != 1 {
						t.Fatalf("user %d item %d: changed=true %d times; want exactly 1", u, i, n)
					}
				}
			}
			refs := make([]*counterv1.ItemRef, items)
			for i := range refs {
				refs[i] = item(i)
			}
			checkCounts := func(want func(i int) int64) {
				t.Helper()
				res, err := e.counters(rpctest.Protocols[1]).GetCounts(bg, as(e, "", &counterv1.GetCountsRequest{Items: refs}))
				if err != nil {
					t.Fatal(err)
				}
				for i, c := range res.Msg.Counts {
					if c.Likes != want(i) {
						t.Fatalf("item %d: GetCounts likes = %d; want %d", i, c.Likes, want(i))
					}
					it := domain.ItemRef{Namespace: "articles", ID: refs[i].Id}
					stored, _ := e.rdb.HGet(bg, redisstore.CountsKey(it), "likes").Int64()
					members, _ := e.rdb.SCard(bg, redisstore.LikersKey(it)).Result()
					if stored != want(i) || members != want(i) {
						t.Fatalf("item %d: stored count %d, likers %d; want %d", i, stored, members, want(i))
					}
				}
			}
			checkCounts(func(int) int64 { return users })
			if n := e.outboxLen(t); n != users*items {
				t.Fatalf("outbox has %d entries; want %d", n, users*items)
			}

			// Like/unlike loops: users 0..19 toggle items 0..9, each pair
			// sequentially, all pairs at once. Even users toggle 4 times
			// (ending liked), odd users 5 times (ending unliked).
			const loopUsers, loopItems = 20, 10
			var loops sync.WaitGroup
			loopErrs := make(chan error, loopUsers*loopItems)
			ops := 0
			for u := range loopUsers {
				n := 4 + u%2
				ops += n * loopItems
				for i := range loopItems {
					loops.Add(1)
					go func() {
						defer loops.Done()
						c := clients[(u+i)%len(clients)]
						for k := range n {
							var ch bool
							var err error
							if k%2 == 0 {
								var r *counterv1.UnlikeResponse
								r, err = c.unlike(user(u), item(i))
								ch = r.GetChanged()
							} else {
								var r *counterv1.LikeResponse
								r, err = c.like(user(u), item(i))
								ch = r.GetChanged()
							}
							if err != nil || !ch {
								loopErrs <- fmt.Errorf("user %d item %d op %d: changed=%v err=%v", u, i, k, ch, err)
								return
							}
						}
					}()
				}
			}
			waitGroup(t, &loops, "the like/unlike loops")
			close(loopErrs)
			for err := range loopErrs {
				t.Fatal(err)
			}
			checkCounts(func(i int) int64 {
				if i < loopItems {
					return users - loopUsers/2
				}
				return users
			})
			if n := e.outboxLen(t); n != int64(users*items+ops) {
				t.Fatalf("outbox has %d entries; want %d", n, users*items+ops)
			}
		})
	}
}

type caller struct {
	e *env
	p rpctest.Protocol
}

func (c caller) like(u string, it *counterv1.ItemRef) (*counterv1.LikeResponse, error) {
	res, err := c.e.counters(c.p).Like(bg, as(c.e, u, &counterv1.LikeRequest{Item: it}))
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

func (c caller) unlike(u string, it *counterv1.ItemRef) (*counterv1.UnlikeResponse, error) {
	res, err := c.e.counters(c.p).Unlike(bg, as(c.e, u, &counterv1.UnlikeRequest{Item: it}))
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

func TestIncrementIsIdempotent(t *testing.T) {
	for _, batching := range []bool{true, false} {
		t.Run(fmt.Sprintf("batching=%v", batching), func(t *testing.T) {
			e := newEnv(t, counter.WithBatching(batching))
			item := ref("videos", "v1")
			req := func() *counterv1.IncrementRequest {
				return &counterv1.IncrementRequest{Item: item, Metric: "views", Delta: 7, IdempotencyKey: "retry-me-1"}
			}
			const n = 5
			vals := make(chan int64, n*len(rpctest.Protocols))
			errs := make(chan error, n*len(rpctest.Protocols))
			var wg sync.WaitGroup
			for _, p := range rpctest.Protocols {
				cs := e.counters(p)
				for range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						res, err := cs.Increment(bg, as(e, "u1", req()))
						if err != nil {
							errs <- err
							return
						}
						vals <- res.Msg.Value
					}()
				}
			}
			waitGroup(t, &wg, "the increments")
			close(vals)
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			for v := range vals {
				if v != 7 {
					t.Fatalf("a repeated Increment returned %d; want 7", v)
				}
			}
			stored := func() int64 {
				v, _ := e.rdb.HGet(bg, redisstore.CountsKey(domain.ItemRef{Namespace: "videos", ID: "v1"}), "views").Int64()
				return v
			}
			if v := stored(); v != 7 || e.outboxLen(t) != 1 {
				t.Fatalf("after %d concurrent repeats: views=%d outbox=%d; want 7 and 1", n*len(rpctest.Protocols), v, e.outboxLen(t))
			}
			cs := e.counters(rpctest.Protocols[0])
			for _, mut := range []func(*counterv1.IncrementRequest){
				func(r *counterv1.IncrementRequest) { r.Delta = 8 },
				func(r *counterv1.IncrementRequest) { r.Metric = "plays" },
				func(r *counterv1.IncrementRequest) { r.Item = ref("videos", "v2") },
			} {
				r := req()
				mut(r)
				_, err := cs.Increment(bg, as(e, "u1", r))
				wantCode(t, "reused key", err, connect.CodeAlreadyExists, "idempotency key")
			}
			if v := stored(); v != 7 || e.outboxLen(t) != 1 {
				t.Fatalf("after conflicting reuse: views=%d outbox=%d; want 7 and 1", v, e.outboxLen(t))
			}
			if n, _ := e.rdb.Exists(bg, redisstore.CountsKey(domain.ItemRef{Namespace: "videos", ID: "v2"})).Result(); n != 0 {
				t.Fatal("a conflicting Increment created the other item's counters")
			}
		})
	}
}

func TestFollowCounts(t *testing.T) {
	e := newEnv(t)
	const followers = 30
	var wg sync.WaitGroup
	var changed atomic.Int32
	errs := make(chan error, followers*3)
	for i := range followers {
		for k := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := e.follows(rpctest.Protocols[(i+k)%3]).Follow(bg, as(e, fmt.Sprintf("f%d", i), &counterv1.FollowRequest{UserId: "star"}))
				if err != nil {
					errs <- err
					return
				}
				if res.Msg.Changed {
					changed.Add(1)
				}
			}()
		}
	}
	waitGroup(t, &wg, "the follows")
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if changed.Load() != followers {
		t.Fatalf("%d follows changed state; want %d", changed.Load(), followers)
	}
	fs := e.follows(rpctest.Protocols[2])
	for i := range 5 {
		if _, err := fs.Follow(bg, as(e, "star", &counterv1.FollowRequest{UserId: fmt.Sprintf("f%d", i)})); err != nil {
			t.Fatal(err)
		}
	}
	res, err := fs.GetUserStats(bg, as(e, "f0", &counterv1.GetUserStatsRequest{UserIds: []string{"star", "f0", "f9"}}))
	if err != nil {
		t.Fatal(err)
	}
	s := res.Msg.Stats
	if s[0].Followers != followers || s[0].Following != 5 || !s[0].ViewerFollows ||
		s[1].Followers != 1 || s[1].Following != 1 || s[2].Followers != 0 || s[2].Following != 1 {
		t.Fatalf("GetUserStats = %v", s)
	}
	keysBefore := e.keys(t)
	outboxBefore := e.outboxLen(t)
	_, err = fs.Follow(bg, as(e, "star", &counterv1.FollowRequest{UserId: "star"}))
	wantCode(t, "self-follow", err, connect.CodeInvalidArgument, "themselves")
	_, err = fs.Unfollow(bg, as(e, "star", &counterv1.UnfollowRequest{UserId: "star"}))
	wantCode(t, "self-unfollow", err, connect.CodeInvalidArgument, "themselves")
	if k := e.keys(t); !slices.Equal(sorted(k), sorted(keysBefore)) || e.outboxLen(t) != outboxBefore {
		t.Fatal("a rejected self-follow changed Redis")
	}
	if m, _ := e.rdb.SIsMember(bg, redisstore.FollowingKey("star"), "star").Result(); m {
		t.Fatal("star follows itself")
	}
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

func TestBadInput(t *testing.T) {
	items501 := make([]*counterv1.ItemRef, 501)
	users501 := make([]string, 501)
	for i := range items501 {
		items501[i] = ref("n", fmt.Sprint(i))
		users501[i] = fmt.Sprint("u", i)
	}
	for _, p := range rpctest.Protocols {
		t.Run(p.Name, func(t *testing.T) {
			e := newEnv(t)
			cs, fs := e.counters(p), e.follows(p)
			ok := ref("articles", "a1")
			like := func(user string, it *counterv1.ItemRef) error {
				_, err := cs.Like(bg, as(e, user, &counterv1.LikeRequest{Item: it}))
				return err
			}
			incr := func(mut func(*counterv1.IncrementRequest)) error {
				r := &counterv1.IncrementRequest{Item: ok, Metric: "views", Delta: 1, IdempotencyKey: "key-00001"}
				mut(r)
				_, err := cs.Increment(bg, as(e, "u1", r))
				return err
			}
			forged := func(req connect.AnyRequest) connect.AnyRequest {
				req.Header().Set("Hgp-Actor", "v2:"+fmt.Sprint(time.Now().Unix())+":forged:u1")
				return req
			}
			cases := []struct {
				name string
				call func() error
				code connect.Code
				msg  string
			}{
				{"like without actor", func() error { return like("", ok) }, connect.CodeUnauthenticated, "acting user"},
				{"unlike without actor", func() error {
					_, err := cs.Unlike(bg, as(e, "", &counterv1.UnlikeRequest{Item: ok}))
					return err
				}, connect.CodeUnauthenticated, "acting user"},
				{"increment without actor", func() error {
					_, err := cs.Increment(bg, as(e, "", &counterv1.IncrementRequest{Item: ok, Metric: "views", Delta: 1, IdempotencyKey: "key-00001"}))
					return err
				}, connect.CodeUnauthenticated, "acting user"},
				{"follow without actor", func() error {
					_, err := fs.Follow(bg, as(e, "", &counterv1.FollowRequest{UserId: "u2"}))
					return err
				}, connect.CodeUnauthenticated, "acting user"},
				{"unfollow without actor", func() error {
					_, err := fs.Unfollow(bg, as(e, "", &counterv1.UnfollowRequest{UserId: "u2"}))
					return err
				}, connect.CodeUnauthenticated, "acting user"},
				{"forged identity on a write", func() error {
					req := connect.NewRequest(&counterv1.LikeRequest{Item: ok})
					forged(req)
					_, err := cs.Like(bg, req)
					return err
				}, connect.CodeUnauthenticated, "identity"},
				{"forged identity on a read", func() error {
					req := connect.NewRequest(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{ok}})
					forged(req)
					_, err := cs.GetCounts(bg, req)
					return err
				}, connect.CodeUnauthenticated, "identity"},
				{"identity from another secret", func() error {
					req := connect.NewRequest(&counterv1.FollowRequest{UserId: "u2"})
					other := newOtherSigner(t)
					req.Header().Set("Hgp-Actor", other.Sign("u1", "/highgopress.counter.v1.FollowService/Follow"))
					_, err := fs.Follow(bg, req)
					return err
				}, connect.CodeUnauthenticated, "identity"},
				{"unusable actor id", func() error { return like("bad user", ok) }, connect.CodeInvalidArgument, "actor"},
				{"missing item", func() error { return like("u1", nil) }, connect.CodeInvalidArgument, "item.namespace: required"},
				{"empty namespace", func() error { return like("u1", ref("", "a1")) }, connect.CodeInvalidArgument, "item.namespace: required"},
				{"namespace with brace", func() error { return like("u1", ref("a{b}", "a1")) }, connect.CodeInvalidArgument, "item.namespace: character '{'"},
				{"namespace too long", func() error { return like("u1", ref(strings.Repeat("n", 33), "a1")) }, connect.CodeInvalidArgument, "item.namespace: must be 1-32"},
				{"uppercase namespace", func() error { return like("u1", ref("Articles", "a1")) }, connect.CodeInvalidArgument, "item.namespace"},
				{"empty id", func() error { return like("u1", ref("articles", "")) }, connect.CodeInvalidArgument, "item.id: required"},
				{"id too long", func() error { return like("u1", ref("articles", strings.Repeat("i", 129))) }, connect.CodeInvalidArgument, "item.id: must be 1-128"},
				{"id with glob", func() error { return like("u1", ref("articles", "a*")) }, connect.CodeInvalidArgument, "item.id: character '*'"},
				{"id with space", func() error { return like("u1", ref("articles", "a b")) }, connect.CodeInvalidArgument, "item.id: character ' '"},
				{"id with hash tag", func() error { return like("u1", ref("articles", "}x{")) }, connect.CodeInvalidArgument, "item.id"},
				{"zero delta", func() error { return incr(func(r *counterv1.IncrementRequest) { r.Delta = 0 }) }, connect.CodeInvalidArgument, "delta: must not be zero"},
				{"huge delta", func() error { return incr(func(r *counterv1.IncrementRequest) { r.Delta = -1_000_001 }) }, connect.CodeInvalidArgument, "delta: must be between"},
				{"missing idempotency key", func() error { return incr(func(r *counterv1.IncrementRequest) { r.IdempotencyKey = "" }) }, connect.CodeInvalidArgument, "idempotency_key: required"},
				{"short idempotency key", func() error { return incr(func(r *counterv1.IncrementRequest) { r.IdempotencyKey = "k" }) }, connect.CodeInvalidArgument, "idempotency_key: must be 8-128"},
				{"idempotency key with bracket", func() error { return incr(func(r *counterv1.IncrementRequest) { r.IdempotencyKey = "key-0001[" }) }, connect.CodeInvalidArgument, "idempotency_key"},
				{"metric likes", func() error { return incr(func(r *counterv1.IncrementRequest) { r.Metric = "likes" }) }, connect.CodeInvalidArgument, "reserved"},
				{"metric charset", func() error { return incr(func(r *counterv1.IncrementRequest) { r.Metric = "Views" }) }, connect.CodeInvalidArgument, "metric"},
				{"missing metric", func() error { return incr(func(r *counterv1.IncrementRequest) { r.Metric = "" }) }, connect.CodeInvalidArgument, "metric: required"},
				{"self-follow", func() error {
					_, err := fs.Follow(bg, as(e, "u1", &counterv1.FollowRequest{UserId: "u1"}))
					return err
				}, connect.CodeInvalidArgument, "themselves"},
				{"follow nobody", func() error {
					_, err := fs.Follow(bg, as(e, "u1", &counterv1.FollowRequest{}))
					return err
				}, connect.CodeInvalidArgument, "user_id: required"},
				{"follow bad id", func() error {
					_, err := fs.Unfollow(bg, as(e, "u1", &counterv1.UnfollowRequest{UserId: "u{2}"}))
					return err
				}, connect.CodeInvalidArgument, "user_id"},
				{"501 items", func() error {
					_, err := cs.GetCounts(bg, as(e, "u1", &counterv1.GetCountsRequest{Items: items501}))
					return err
				}, connect.CodeInvalidArgument, "at most 500 items per request, got 501"},
				{"no items", func() error {
					_, err := cs.GetCounts(bg, as(e, "", &counterv1.GetCountsRequest{}))
					return err
				}, connect.CodeInvalidArgument, "items: at least one"},
				{"one bad item of many", func() error {
					_, err := cs.GetCounts(bg, as(e, "", &counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{ok, ref("articles", "?")}}))
					return err
				}, connect.CodeInvalidArgument, "items[1].id"},
				{"501 users", func() error {
					_, err := fs.GetUserStats(bg, as(e, "", &counterv1.GetUserStatsRequest{UserIds: users501}))
					return err
				}, connect.CodeInvalidArgument, "at most 500 user ids per request, got 501"},
				{"bad user id in stats", func() error {
					_, err := fs.GetUserStats(bg, as(e, "", &counterv1.GetUserStatsRequest{UserIds: []string{"a", "b c"}}))
					return err
				}, connect.CodeInvalidArgument, "user_ids[1]"},
				{"oversized message", func() error {
					// One item id of 300 KiB: larger than the 256 KiB limit,
					// rejected before it is decoded.
					return like("u1", ref("articles", strings.Repeat("x", 300<<10)))
				}, connect.CodeResourceExhausted, ""},
			}
			for _, c := range cases {
				wantCode(t, c.name, c.call(), c.code, c.msg)
			}
			if k := e.keys(t); len(k) != 0 {
				t.Fatalf("rejected requests created keys %v", k)
			}
		})
	}
}

// newOtherSigner signs with a secret the service does not know.
func newOtherSigner(t *testing.T) *identity.Signer {
	t.Helper()
	s, err := identity.NewSigner([]byte(strings.Repeat("o", identity.MinSecretLen)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// hgetallCounter counts HGETALL commands per key and, while hold is open,
// holds every command list carrying one (the first fetch of a read).
type hgetallCounter struct {
	mu   sync.Mutex
	n    map[string]int
	hold <-chan struct{} // nil: never hold
}

func (h *hgetallCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *hgetallCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.count([]redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}
func (h *hgetallCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.count(cmds)
		return next(ctx, cmds)
	}
}
func (h *hgetallCounter) count(cmds []redis.Cmder) {
	h.mu.Lock()
	found := false
	for _, c := range cmds {
		if c.Name() == "hgetall" {
			h.n[fmt.Sprint(c.Args()[1])]++
			found = true
		}
	}
	h.mu.Unlock()
	if found && h.hold != nil {
		<-h.hold
	}
}
func (h *hgetallCounter) get(key string) int { h.mu.Lock(); defer h.mu.Unlock(); return h.n[key] }

func TestReadCache(t *testing.T) {
	e := newEnv(t, counter.WithCacheTTL(time.Minute))
	hold, release := releaser(t)
	hook := &hgetallCounter{n: map[string]int{}, hold: hold}
	e.rdb.AddHook(hook)
	cs := e.counters(rpctest.Protocols[1])
	item := ref("articles", "hot")
	key := redisstore.CountsKey(domain.ItemRef{Namespace: "articles", ID: "hot"})
	get := func(viewer string) *counterv1.ItemCount {
		t.Helper()
		res, err := cs.GetCounts(bg, as(e, viewer, &counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item}}))
		if err != nil {
			t.Fatal(err)
		}
		return res.Msg.Counts[0]
	}

	// Concurrent misses of one key reach Redis once: the first read's
	// HGETALL is held until every other read waits for it (without the
	// single-flight they would send HGETALLs of their own and never wait).
	const readers = 50
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := cs.GetCounts(bg, as(e, "", &counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item}}))
			if err == nil && res.Msg.Counts[0].Likes != 0 {
				err = fmt.Errorf("likes = %d; want 0", res.Msg.Counts[0].Likes)
			}
			errs <- err
		}()
	}
	testenv.Eventually(t, waitTimeout, "one HGETALL held and the other readers waiting for it", func() bool {
		return hook.get(key) == 1 && e.c.App().CacheStats().Waiting == readers-1
	})
	release()
	waitGroup(t, &wg, "the readers")
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := hook.get(key); n != 1 {
		t.Fatalf("%d concurrent reads of one key sent %d HGETALLs; want 1", readers, n)
	}

	// A write through this instance is visible at once to its writer.
	if _, err := cs.Like(bg, as(e, "u1", &counterv1.LikeRequest{Item: item})); err != nil {
		t.Fatal(err)
	}
	if c := get("u1"); c.Likes != 1 || !c.ViewerLiked {
		t.Fatalf("after own Like: %v; want likes=1 viewer_liked", c)
	}
	// viewer_liked is per viewer, never shared through the cache.
	if c := get("u2"); c.Likes != 1 || c.ViewerLiked {
		t.Fatalf("as another viewer: %v; want likes=1, not liked", c)
	}
	// A change made elsewhere (another instance) shows in likes only once
	// the entry expires, but the viewer's own like state is always fresh.
	it := domain.ItemRef{Namespace: "articles", ID: "hot"}
	if err := e.rdb.SRem(bg, redisstore.LikersKey(it), "u1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.HSet(bg, key, "likes", 42).Err(); err != nil {
		t.Fatal(err)
	}
	if c := get("u1"); c.Likes != 1 || c.ViewerLiked {
		t.Fatalf("after an outside change: %v; want cached likes=1 and fresh viewer_liked=false", c)
	}
	if n := hook.get(key); n != 2 {
		t.Fatalf("%d HGETALLs; want 2 (one before and one after the Like)", n)
	}
}

func TestRedisUnavailable(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second})
	defer rdb.Close()
	c, err := counter.New(logging.Discard(), rdb, newSigner(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	url, client := rpctest.Serve(t, c.Handler())
	e := &env{url: url, http: client, signer: newSigner(t)}
	for _, p := range rpctest.Protocols {
		_, err := e.counters(p).Like(bg, as(e, "u1", &counterv1.LikeRequest{Item: ref("a", "b")}))
		wantCode(t, p.Name+" Like", err, connect.CodeUnavailable, "retry later")
		if strings.Contains(err.Error(), "127.0.0.1") {
			t.Fatalf("error leaks the Redis address: %v", err)
		}
		_, err = e.follows(p).GetUserStats(bg, as(e, "", &counterv1.GetUserStatsRequest{UserIds: []string{"u1"}}))
		wantCode(t, p.Name+" GetUserStats", err, connect.CodeUnavailable, "")
	}
}

func TestBuild(t *testing.T) {
	base := map[string]string{"HGP_IDENTITY_SECRET": secret, "HGP_REDIS_ADDR": "127.0.0.1:1"}
	with := func(kv ...string) *config.Reader {
		m := maps.Clone(base)
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return config.FromMap(m)
	}
	for name, tc := range map[string]struct {
		cfg  *config.Reader
		want []string
	}{
		"missing secret": {with("HGP_IDENTITY_SECRET", ""), []string{"HGP_IDENTITY_SECRET", "required"}},
		"short secret":   {with("HGP_IDENTITY_SECRET", "short"), []string{"HGP_IDENTITY_SECRET", "at least 32"}},
		"bad values": {with("HGP_COUNTER_BATCHING", "maybe", "HGP_COUNTER_WORKERS", "0", "HGP_COUNTER_CACHE_TTL", "soon", "HGP_MAX_MESSAGE_BYTES", "x",
			"HGP_COUNTER_MAX_METRICS", "0", "HGP_COUNTER_OUTBOX_MAXLEN", "-1", "HGP_COUNTER_REQUIRE_NOEVICTION", "perhaps",
			"HGP_COUNTER_SETTLE_DELAY", "0s", "HGP_RECONCILE_INTERVAL", "often", "HGP_RECONCILE_REPAIR", "sometimes"),
			[]string{"HGP_COUNTER_BATCHING", "HGP_COUNTER_WORKERS", "HGP_COUNTER_CACHE_TTL", "HGP_MAX_MESSAGE_BYTES",
				"HGP_COUNTER_MAX_METRICS", "HGP_COUNTER_OUTBOX_MAXLEN", "HGP_COUNTER_REQUIRE_NOEVICTION", "HGP_COUNTER_SETTLE_DELAY",
				"HGP_RECONCILE_INTERVAL", "HGP_RECONCILE_REPAIR"}},
		"too many metrics allowed": {with("HGP_COUNTER_MAX_METRICS", "257"), []string{"HGP_COUNTER_MAX_METRICS"}},
		"redis down":               {with(), []string{"HGP_REDIS_ADDR", "127.0.0.1:1", "PING"}},
		"bad mysql dsn":            {with("HGP_MYSQL_DSN", "nonsense"), []string{"HGP_MYSQL_DSN", "DSN"}},
		"mysql down":               {with("HGP_MYSQL_DSN", "u:p@tcp(127.0.0.1:1)/db"), []string{"HGP_MYSQL_DSN", "127.0.0.1:1"}},
	} {
		t.Run(name, func(t *testing.T) {
			comp, err := counter.Build(bg, logging.Discard(), tc.cfg)
			if err == nil {
				_ = comp.Close()
				t.Fatal("Build succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}

	// Every component runs the WatchCounts hub's shutdown worker; with
	// MySQL and Kafka it runs the outbox relay and the settle worker
	// besides the server, and with MySQL and HGP_RECONCILE_INTERVAL the
	// periodic reconciliation.
	t.Run("workers", func(t *testing.T) {
		realRedis(t)
		for _, tc := range []struct {
			kv      []string
			workers int
		}{
			{nil, 1},
			{[]string{"HGP_KAFKA_BROKERS", testenv.KafkaBrokers(t)}, 2},
			{[]string{"HGP_MYSQL_DSN", testenv.MySQLDSN(t)}, 1},
			{[]string{"HGP_KAFKA_BROKERS", testenv.KafkaBrokers(t), "HGP_MYSQL_DSN", testenv.MySQLDSN(t)}, 3},
			{[]string{"HGP_MYSQL_DSN", testenv.MySQLDSN(t), "HGP_RECONCILE_INTERVAL", "1m"}, 2},
			{[]string{"HGP_KAFKA_BROKERS", testenv.KafkaBrokers(t), "HGP_MYSQL_DSN", testenv.MySQLDSN(t), "HGP_RECONCILE_INTERVAL", "1m"}, 4},
		} {
			comp, err := counter.Build(bg, logging.Discard(), with(append([]string{
				"HGP_REDIS_ADDR", testenv.RedisAddr(t), "HGP_REDIS_DB", fmt.Sprint(testDB), "HGP_COUNTER_ADDR", "127.0.0.1:0"}, tc.kv...)...))
			if err != nil {
				t.Fatal(err)
			}
			if len(comp.Workers) != tc.workers {
				t.Errorf("with %v: %d workers; want %d", tc.kv, len(comp.Workers), tc.workers)
			}
			if err := comp.Close(); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("serves", func(t *testing.T) {
		rdb := realRedis(t)
		comp, err := counter.Build(bg, logging.Discard(), with(
			"HGP_REDIS_ADDR", testenv.RedisAddr(t), "HGP_REDIS_DB", fmt.Sprint(testDB),
			"HGP_COUNTER_ADDR", "127.0.0.1:0", "HGP_COUNTER_BATCHING", "off", "HGP_COUNTER_CACHE_TTL", "0"))
		if err != nil {
			t.Fatal(err)
		}
		if comp.Name != "counter" || comp.Addr != "127.0.0.1:0" || comp.Server == nil || comp.Close == nil {
			t.Fatalf("component = %+v", comp)
		}
		url, client := rpctest.Serve(t, comp.Server.Handler())
		e := &env{url: url, http: client, signer: newSigner(t), rdb: rdb}
		res, err := e.counters(rpctest.Protocols[2]).Like(bg, as(e, "u1", &counterv1.LikeRequest{Item: ref("a", "b")}))
		if err != nil || !res.Msg.Changed || res.Msg.Count != 1 {
			t.Fatalf("Like = %v, %v", res, err)
		}
		if err := comp.Close(); err != nil {
			t.Fatal(err)
		}
		_, err = e.counters(rpctest.Protocols[2]).Like(bg, as(e, "u2", &counterv1.LikeRequest{Item: ref("a", "b")}))
		wantCode(t, "Like after Close", err, connect.CodeUnavailable, "")
	})
}

// TestReadHonoursDeadline: a read whose caller's deadline passes while Redis
// is slow returns DeadlineExceeded at once, although it leads the fetch;
// the fetch goes on for a reader that joined it, and its result is cached.
func TestReadHonoursDeadline(t *testing.T) {
	for _, batching := range []bool{true, false} {
		t.Run(fmt.Sprintf("batching=%v", batching), func(t *testing.T) {
			e := newEnv(t, counter.WithBatching(batching), counter.WithCacheTTL(time.Minute))
			hold, release := releaser(t)
			hook := &hgetallCounter{n: map[string]int{}, hold: hold}
			e.rdb.AddHook(hook)
			items := []domain.ItemRef{{Namespace: "articles", ID: "slow"}}
			key := redisstore.CountsKey(items[0])
			if err := e.rdb.HSet(bg, key, "likes", 3).Err(); err != nil {
				t.Fatal(err)
			}

			ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
			defer cancel()
			leader := make(chan error, 1)
			go func() {
				_, err := e.c.App().GetCounts(ctx, "", items)
				leader <- err
			}()
			testenv.Eventually(t, waitTimeout, "the HGETALL to be held", func() bool { return hook.get(key) == 1 })
			follower := make(chan []domain.ItemView, 1)
			go func() {
				v, _ := e.c.App().GetCounts(bg, "", items)
				follower <- v
			}()
			// Redis has not answered (the HGETALL is held): the caller must
			// still get its deadline.
			if err := recv(t, leader, "the read with a deadline"); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("GetCounts with a passed deadline = %v; want DeadlineExceeded", err)
			}
			testenv.Eventually(t, waitTimeout, "the second reader to join", func() bool { return e.c.App().CacheStats().Waiting == 1 })
			release()
			if v := recv(t, follower, "the joined read"); len(v) != 1 || v[0].Counts.Likes != 3 {
				t.Fatalf("joined read = %+v; want likes 3", v)
			}
			if v, err := e.c.App().GetCounts(bg, "", items); err != nil || v[0].Counts.Likes != 3 || hook.get(key) != 1 {
				t.Fatalf("cached read = %+v, %v after %d HGETALLs; want likes 3 from the one fetch", v, err, hook.get(key))
			}
		})
	}
}

// TestMetricsPerItemCap: an item has at most WithMaxMetrics metrics besides
// likes; one more is refused with ResourceExhausted and changes nothing.
func TestMetricsPerItemCap(t *testing.T) {
	const maxMetrics = 3
	e := newEnv(t, counter.WithMaxMetrics(maxMetrics))
	item := ref("videos", "full")
	it := domain.ItemRef{Namespace: "videos", ID: "full"}
	incr := func(p rpctest.Protocol, metric, key string) (int64, error) {
		res, err := e.counters(p).Increment(bg, as(e, "u1", &counterv1.IncrementRequest{
			Item: item, Metric: metric, Delta: 1, IdempotencyKey: key,
		}))
		if err != nil {
			return 0, err
		}
		return res.Msg.Value, nil
	}
	// likes is not a metric: it does not count against the cap.
	if _, err := e.counters(rpctest.Protocols[0]).Like(bg, as(e, "u1", &counterv1.LikeRequest{Item: item})); err != nil {
		t.Fatal(err)
	}
	for i := range maxMetrics {
		if v, err := incr(rpctest.Protocols[0], fmt.Sprint("m", i), fmt.Sprint("key-m", i, "-0000")); err != nil || v != 1 {
			t.Fatalf("metric %d = %d, %v", i, v, err)
		}
	}
	hashBefore, _ := e.rdb.HGetAll(bg, redisstore.CountsKey(it)).Result()
	outboxBefore := e.outboxLen(t)
	for _, p := range rpctest.Protocols {
		key := "key-over-" + p.Name
		_, err := incr(p, "one_too_many", key)
		wantCode(t, p.Name+": a metric over the cap", err, connect.CodeResourceExhausted, "already has 3 metrics")
		if n, _ := e.rdb.Exists(bg, redisstore.IdempotencyKey("u1", key)).Result(); n != 0 {
			t.Fatalf("%s: a refused Increment kept an idempotency record", p.Name)
		}
		// Metrics the item has still count.
		if v, err := incr(p, "m0", "key-m0-"+p.Name); err != nil || v < 2 {
			t.Fatalf("%s: existing metric = %d, %v", p.Name, v, err)
		}
	}
	hashAfter, _ := e.rdb.HGetAll(bg, redisstore.CountsKey(it)).Result()
	if _, ok := hashAfter["one_too_many"]; ok || len(hashAfter) != len(hashBefore) {
		t.Fatalf("counts after refused metrics = %v; before %v", hashAfter, hashBefore)
	}
	if n := e.outboxLen(t); n != outboxBefore+int64(len(rpctest.Protocols)) {
		t.Fatalf("outbox grew by %d; want %d (only the increments of m0)", n-outboxBefore, len(rpctest.Protocols))
	}
}
