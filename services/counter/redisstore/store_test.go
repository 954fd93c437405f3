package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/counter/domain"
	"github.com/highgopress/highgopress/services/counter/outbox"
	"github.com/highgopress/highgopress/services/counter/redisstore"
)

// testDB is the Redis database this package's tests own and flush.
const testDB = 14

type env struct {
	store *redisstore.Store
	rdb   *redis.Client
}

// backends are the Redis servers and batching modes every contract test
// runs against: the real server (batching on and off) and miniredis, which
// the standalone mode embeds.
var backends = []struct {
	name string
	new  func(t *testing.T, opts ...redisstore.Option) env
}{
	{"redis/batching=on", func(t *testing.T, opts ...redisstore.Option) env { return realEnv(t, true, opts...) }},
	{"redis/batching=off", func(t *testing.T, opts ...redisstore.Option) env { return realEnv(t, false, opts...) }},
	{"miniredis", miniEnv},
}

func realEnv(t *testing.T, batching bool, opts ...redisstore.Option) env {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t), DB: testDB})
	t.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.FlushDB(context.Background()).Err(); err != nil {
		t.Fatalf("FLUSHDB: %v", err)
	}
	return newEnv(t, rdb, append([]redisstore.Option{redisstore.WithBatching(batching), redisstore.WithWorkers(2)}, opts...)...)
}

func miniEnv(t *testing.T, opts ...redisstore.Option) env {
	t.Helper()
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return newEnv(t, rdb, opts...)
}

func newEnv(t *testing.T, rdb *redis.Client, opts ...redisstore.Option) env {
	s := redisstore.New(logging.Discard(), rdb, opts...)
	t.Cleanup(func() { _ = s.Close() })
	return env{store: s, rdb: rdb}
}

func forEachBackend(t *testing.T, f func(t *testing.T, e env), opts ...redisstore.Option) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b.new(t, opts...)) })
	}
}

// outboxEntries returns every outbox entry's fields, oldest first.
func outboxEntries(t *testing.T, rdb *redis.Client) []map[string]any {
	t.Helper()
	msgs, err := rdb.XRange(context.Background(), outbox.Stream, "-", "+").Result()
	if err != nil {
		t.Fatalf("XRANGE: %v", err)
	}
	out := make([]map[string]any, len(msgs))
	for i, m := range msgs {
		out[i] = m.Values
	}
	return out
}

func wantOutbox(t *testing.T, rdb *redis.Client, want ...map[string]any) {
	t.Helper()
	got := outboxEntries(t, rdb)
	if len(got) != len(want) {
		t.Fatalf("outbox has %d entries %v; want %d %v", len(got), got, len(want), want)
	}
	for i := range want {
		if !maps.Equal(got[i], want[i]) {
			t.Fatalf("outbox[%d] = %v; want %v", i, got[i], want[i])
		}
	}
}

var ctx = context.Background()

func TestLikes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e env) {
		it := domain.ItemRef{Namespace: "articles", ID: "a:1"}
		steps := []struct {
			user string
			like bool
			want domain.LikeResult
		}{
			{"u1", true, domain.LikeResult{Changed: true, Count: 1}},
			{"u1", true, domain.LikeResult{Changed: false, Count: 1}},
			{"u2", true, domain.LikeResult{Changed: true, Count: 2}},
			{"u1", false, domain.LikeResult{Changed: true, Count: 1}},
			{"u1", false, domain.LikeResult{Changed: false, Count: 1}},
			{"u3", false, domain.LikeResult{Changed: false, Count: 1}},
		}
		for i, s := range steps {
			got, err := e.store.SetLike(ctx, s.user, it, s.like)
			if err != nil || got != s.want {
				t.Fatalf("step %d: SetLike(%s, %v) = %+v, %v; want %+v", i, s.user, s.like, got, err, s.want)
			}
		}
		if m, _ := e.rdb.SMembers(ctx, redisstore.LikersKey(it)).Result(); !slices.Equal(m, []string{"u2"}) {
			t.Fatalf("likers = %v; want [u2]", m)
		}
		ev := func(k, u, d string) map[string]any {
			return map[string]any{"k": k, "u": u, "ns": "articles", "id": "a:1", "d": d}
		}
		wantOutbox(t, e.rdb, ev("like", "u1", "1"), ev("like", "u2", "1"), ev("unlike", "u1", "-1"))

		// Unliking something never liked creates nothing.
		other := domain.ItemRef{Namespace: "articles", ID: "never"}
		if got, err := e.store.SetLike(ctx, "u1", other, false); err != nil || got != (domain.LikeResult{}) {
			t.Fatalf("unlike of unliked item = %+v, %v", got, err)
		}
		if n, _ := e.rdb.Exists(ctx, redisstore.LikersKey(other), redisstore.CountsKey(other)).Result(); n != 0 {
			t.Fatalf("unlike of unliked item created %d keys", n)
		}
	})
}

func TestFollows(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e env) {
		steps := []struct {
			a, b   string
			follow bool
			want   domain.FollowResult
		}{
			{"a", "b", true, domain.FollowResult{Changed: true, Following: 1, Followers: 1}},
			{"a", "b", true, domain.FollowResult{Changed: false, Following: 1, Followers: 1}},
			{"c", "b", true, domain.FollowResult{Changed: true, Following: 1, Followers: 2}},
			{"a", "c", true, domain.FollowResult{Changed: true, Following: 2, Followers: 1}},
			{"a", "b", false, domain.FollowResult{Changed: true, Following: 1, Followers: 1}},
			{"a", "b", false, domain.FollowResult{Changed: false, Following: 1, Followers: 1}},
		}
		for i, s := range steps {
			got, err := e.store.SetFollow(ctx, s.a, s.b, s.follow)
			if err != nil || got != s.want {
				t.Fatalf("step %d: SetFollow(%s, %s, %v) = %+v, %v; want %+v", i, s.a, s.b, s.follow, got, err, s.want)
			}
		}
		if m, _ := e.rdb.SMembers(ctx, redisstore.FollowersKey("b")).Result(); !slices.Equal(m, []string{"c"}) {
			t.Fatalf("followers of b = %v; want [c]", m)
		}
		ev := func(k, u, tgt, d string) map[string]any {
			return map[string]any{"k": k, "u": u, "t": tgt, "d": d}
		}
		wantOutbox(t, e.rdb, ev("follow", "a", "b", "1"), ev("follow", "c", "b", "1"),
			ev("follow", "a", "c", "1"), ev("unfollow", "a", "b", "-1"))

		counts, follows, err := e.store.ReadUsers(ctx, []string{"a", "b", "c", "nobody"}, "a", []string{"a", "b", "c", "nobody"})
		if err != nil {
			t.Fatal(err)
		}
		wantCounts := []domain.UserCounts{{Following: 1}, {Followers: 1}, {Followers: 1, Following: 1}, {}}
		if !slices.Equal(counts, wantCounts) || !slices.Equal(follows, []bool{false, false, true, false}) {
			t.Fatalf("ReadUsers = %+v %v; want %+v [false false true false]", counts, follows, wantCounts)
		}
		if _, follows, _ := e.store.ReadUsers(ctx, []string{"c"}, "", []string{"c"}); follows != nil {
			t.Fatalf("anonymous read returned follow flags %v", follows)
		}
	})
}

func TestIncrement(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e env) {
		it := domain.ItemRef{Namespace: "articles", ID: "a1"}
		in := domain.Increment{Item: it, Metric: "views", Delta: 5, IdempotencyKey: "req-0001"}
		for i := range 3 {
			if v, err := e.store.Increment(ctx, "u1", in); err != nil || v != 5 {
				t.Fatalf("attempt %d: Increment = %d, %v; want 5", i, v, err)
			}
		}
		for name, mut := range map[string]func(*domain.Increment){
			"delta":  func(x *domain.Increment) { x.Delta = 6 },
			"metric": func(x *domain.Increment) { x.Metric = "shares" },
			"item":   func(x *domain.Increment) { x.Item.ID = "a2" },
			"ns":     func(x *domain.Increment) { x.Item.Namespace = "comments" },
		} {
			other := in
			mut(&other)
			if _, err := e.store.Increment(ctx, "u1", other); !errors.Is(err, domain.ErrIdempotencyConflict) {
				t.Fatalf("reused key with other %s: err = %v; want ErrIdempotencyConflict", name, err)
			}
		}
		// Another user's key is another record.
		if v, err := e.store.Increment(ctx, "u2", in); err != nil || v != 10 {
			t.Fatalf("u2 Increment = %d, %v; want 10", v, err)
		}
		// User ids may contain ':'; records must still not collide.
		colA := domain.Increment{Item: it, Metric: "views", Delta: 1, IdempotencyKey: "b:c1234567"}
		colB := domain.Increment{Item: it, Metric: "views", Delta: 2, IdempotencyKey: "c1234567"}
		if v, err := e.store.Increment(ctx, "a", colA); err != nil || v != 11 {
			t.Fatalf("Increment(a, b:c...) = %d, %v; want 11", v, err)
		}
		if v, err := e.store.Increment(ctx, "a:b", colB); err != nil || v != 13 {
			t.Fatalf("Increment(a:b, c...) = %d, %v; want 13", v, err)
		}
		neg := domain.Increment{Item: it, Metric: "score", Delta: -3, IdempotencyKey: "req-0002"}
		if v, err := e.store.Increment(ctx, "u1", neg); err != nil || v != -3 {
			t.Fatalf("negative Increment = %d, %v; want -3", v, err)
		}
		ttl, err := e.rdb.TTL(ctx, redisstore.IdempotencyKey("u1", "req-0001")).Result()
		if err != nil || ttl <= 23*time.Hour || ttl > 24*time.Hour {
			t.Fatalf("idempotency record TTL = %v, %v; want about 24h", ttl, err)
		}
		ev := func(u, m, d, ik string) map[string]any {
			return map[string]any{"k": "incr", "u": u, "ns": "articles", "id": "a1", "m": m, "d": d, "ik": ik}
		}
		wantOutbox(t, e.rdb, ev("u1", "views", "5", "req-0001"), ev("u2", "views", "5", "req-0001"),
			ev("a", "views", "1", "b:c1234567"), ev("a:b", "views", "2", "c1234567"), ev("u1", "score", "-3", "req-0002"))

		counts, liked, err := e.store.ReadItems(ctx, []domain.ItemRef{it, {Namespace: "x", ID: "none"}}, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if liked != nil || counts[0].Likes != 0 || !maps.Equal(counts[0].Metrics, map[string]int64{"views": 13, "score": -3}) ||
			counts[1].Likes != 0 || len(counts[1].Metrics) != 0 {
			t.Fatalf("ReadItems = %+v %v", counts, liked)
		}
	})
}

func TestReadItemsViewer(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e env) {
		a := domain.ItemRef{Namespace: "n", ID: "a"}
		b := domain.ItemRef{Namespace: "n", ID: "b"}
		for _, u := range []string{"u1", "u2"} {
			if _, err := e.store.SetLike(ctx, u, a, true); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.store.SetLike(ctx, "u2", b, true); err != nil {
			t.Fatal(err)
		}
		// Fetch only b's counts but check u1's likes of both.
		counts, liked, err := e.store.ReadItems(ctx, []domain.ItemRef{b}, "u1", []domain.ItemRef{a, b})
		if err != nil {
			t.Fatal(err)
		}
		if len(counts) != 1 || counts[0].Likes != 1 || !slices.Equal(liked, []bool{true, false}) {
			t.Fatalf("ReadItems = %+v %v", counts, liked)
		}
	})
}

func TestScriptCacheLost(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e env) {
		it := domain.ItemRef{Namespace: "n", ID: "a"}
		if err := e.store.LoadScripts(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := e.store.SetLike(ctx, "u1", it, true); err != nil {
			t.Fatal(err)
		}
		// A Redis restart or SCRIPT FLUSH drops loaded scripts: EVALSHA
		// fails with NOSCRIPT and the store must fall back to EVAL.
		if err := e.rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if got, err := e.store.SetLike(ctx, "u2", it, true); err != nil || got != (domain.LikeResult{Changed: true, Count: 2}) {
			t.Fatalf("after SCRIPT FLUSH: %+v, %v", got, err)
		}
		if got, err := e.store.SetLike(ctx, "u3", it, true); err != nil || got.Count != 3 {
			t.Fatalf("after reload: %+v, %v", got, err)
		}
	})
}

func TestUnavailable(t *testing.T) {
	// Nothing listens on port 1 of the loopback address.
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second})
	defer rdb.Close()
	for _, batching := range []bool{true, false} {
		t.Run(fmt.Sprintf("batching=%v", batching), func(t *testing.T) {
			s := redisstore.New(logging.Discard(), rdb, redisstore.WithBatching(batching))
			defer s.Close()
			it := domain.ItemRef{Namespace: "n", ID: "a"}
			if _, err := s.SetLike(ctx, "u1", it, true); !errors.Is(err, domain.ErrUnavailable) {
				t.Fatalf("SetLike: %v; want ErrUnavailable", err)
			}
			if _, _, err := s.ReadItems(ctx, []domain.ItemRef{it}, "u1", []domain.ItemRef{it}); !errors.Is(err, domain.ErrUnavailable) {
				t.Fatalf("ReadItems: %v; want ErrUnavailable", err)
			}
			if err := s.LoadScripts(ctx); !errors.Is(err, domain.ErrUnavailable) {
				t.Fatalf("LoadScripts: %v; want ErrUnavailable", err)
			}
			if _, err := s.MaxMemoryPolicy(ctx); !errors.Is(err, domain.ErrUnavailable) {
				t.Fatalf("MaxMemoryPolicy: %v; want ErrUnavailable", err)
			}
		})
	}
}

func TestClosedStore(t *testing.T) {
	for _, batching := range []bool{true, false} {
		t.Run(fmt.Sprintf("batching=%v", batching), func(t *testing.T) {
			m := miniredis.RunT(t)
			rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
			defer rdb.Close()
			s := redisstore.New(logging.Discard(), rdb, redisstore.WithBatching(batching))
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			_ = s.Close() // idempotent
			_, err := s.SetLike(ctx, "u1", domain.ItemRef{Namespace: "n", ID: "a"}, true)
			if !errors.Is(err, domain.ErrUnavailable) {
				t.Fatalf("SetLike after Close: %v; want ErrUnavailable", err)
			}
			if n := len(m.Keys()); n != 0 {
				t.Fatalf("closed store wrote %d keys", n)
			}
		})
	}
}

func TestMetricCap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e env) {
		it := domain.ItemRef{Namespace: "n", ID: "full"}
		if _, err := e.store.SetLike(ctx, "u1", it, true); err != nil { // likes is not a metric
			t.Fatal(err)
		}
		for i, m := range []string{"a", "b"} {
			in := domain.Increment{Item: it, Metric: m, Delta: 1, IdempotencyKey: fmt.Sprintf("key-%d-000", i)}
			if _, err := e.store.Increment(ctx, "u1", in); err != nil {
				t.Fatalf("metric %s: %v", m, err)
			}
		}
		before := outboxEntries(t, e.rdb)
		over := domain.Increment{Item: it, Metric: "c", Delta: 1, IdempotencyKey: "key-over-0"}
		_, err := e.store.Increment(ctx, "u1", over)
		if !errors.Is(err, domain.ErrTooManyMetrics) || !strings.Contains(err.Error(), "already has 2 metrics") {
			t.Fatalf("third metric: %v; want ErrTooManyMetrics naming the 2 metrics", err)
		}
		if h, _ := e.rdb.HGetAll(ctx, redisstore.CountsKey(it)).Result(); !maps.Equal(h, map[string]string{"likes": "1", "a": "1", "b": "1"}) {
			t.Fatalf("counts after a refused metric = %v", h)
		}
		if n, _ := e.rdb.Exists(ctx, redisstore.IdempotencyKey("u1", over.IdempotencyKey)).Result(); n != 0 || len(outboxEntries(t, e.rdb)) != len(before) {
			t.Fatal("a refused metric left an idempotency record or an outbox entry")
		}
		// An existing metric still counts, also with a negative delta; a
		// replay of an applied key is answered from its record.
		if v, err := e.store.Increment(ctx, "u1", domain.Increment{Item: it, Metric: "a", Delta: -5, IdempotencyKey: "key-neg-0"}); err != nil || v != -4 {
			t.Fatalf("existing metric = %d, %v; want -4", v, err)
		}
		if v, err := e.store.Increment(ctx, "u1", domain.Increment{Item: it, Metric: "a", Delta: 1, IdempotencyKey: "key-0-000"}); err != nil || v != 1 {
			t.Fatalf("replayed key = %d, %v; want its first value 1", v, err)
		}
		// Other items have their own allowance.
		other := over
		other.Item.ID = "empty"
		if v, err := e.store.Increment(ctx, "u1", other); err != nil || v != 1 {
			t.Fatalf("metric of another item = %d, %v", v, err)
		}
	}, redisstore.WithMaxMetrics(2))
}

func TestOutboxMaxLen(t *testing.T) {
	const bound, writes = 10, 600
	// Redis trims approximately: whole stream nodes of up to
	// stream-node-max-entries (default 100) entries.
	const slack = 100
	write := func(t *testing.T, e env) {
		t.Helper()
		for i := range writes {
			if _, err := e.store.SetLike(ctx, fmt.Sprint("u", i), domain.ItemRef{Namespace: "n", ID: "a"}, true); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Run("bounded", func(t *testing.T) {
		forEachBackend(t, func(t *testing.T, e env) {
			write(t, e)
			n, err := e.rdb.XLen(ctx, outbox.Stream).Result()
			if err != nil || n < bound || n > bound+slack {
				t.Fatalf("outbox holds %d entries (%v) after %d writes; want %d to %d", n, err, writes, bound, bound+slack)
			}
			// Trimming drops the oldest entries only.
			last, _ := e.rdb.XRevRangeN(ctx, outbox.Stream, "+", "-", 1).Result()
			if len(last) != 1 || last[0].Values["u"] != fmt.Sprint("u", writes-1) {
				t.Fatalf("newest entry = %v; want the last like", last)
			}
		}, redisstore.WithOutboxMaxLen(bound))
	})
	t.Run("default never trims", func(t *testing.T) {
		forEachBackend(t, func(t *testing.T, e env) {
			write(t, e)
			if n, err := e.rdb.XLen(ctx, outbox.Stream).Result(); err != nil || n != writes {
				t.Fatalf("outbox holds %d entries (%v); want all %d", n, err, writes)
			}
		})
	})
}

func TestMaxMemoryPolicy(t *testing.T) {
	e := realEnv(t, true)
	if p, err := e.store.MaxMemoryPolicy(ctx); err != nil || p == "" {
		t.Fatalf("MaxMemoryPolicy = %q, %v", p, err)
	}
	// miniredis has no CONFIG, like a managed Redis that disables it: an
	// error that does not mean "unavailable".
	m := miniEnv(t)
	if _, err := m.store.MaxMemoryPolicy(ctx); err == nil || errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("MaxMemoryPolicy without CONFIG = %v; want a plain error", err)
	}
}
