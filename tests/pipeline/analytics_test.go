package pipeline_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	analyticsv1 "github.com/highgopress/highgopress/gen/highgopress/analytics/v1"
	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/testenv"
)

// likeLoad sends random likes and unlikes through the gateway: users
// goroutines, each ops requests one after the other over items items of
// namespace ns, user u over protocols[u%3]. Every request must succeed;
// the model is each pair's last acknowledged state.
type likeLoad struct {
	s                 *stack
	ns                string
	users, items, ops int
	seed              uint64
	acked             atomic.Int64
}

func (l *likeLoad) item(i int) string { return "i" + strconv.Itoa(i) }

// run sends the load and returns the like count of every item the
// acknowledged answers imply, and the failures (a request that failed, or
// a changed flag contradicting the user's own history).
func (l *likeLoad) run(t testing.TB, ctx context.Context) (map[string]int64, []error) {
	clients := make([]counterv1connect.CounterServiceClient, len(protocols))
	for i, p := range protocols {
		clients[i] = l.s.counters(p.Opts...)
	}
	states := make([]map[int]bool, l.users)
	errs := make([][]error, l.users)
	var wg sync.WaitGroup
	for u := range l.users {
		user := "an-u" + strconv.Itoa(u)
		_ = l.s.token(t, user)
		st := map[int]bool{}
		states[u] = st
		c := clients[u%len(clients)]
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(l.seed, uint64(u)))
			for range l.ops {
				if ctx.Err() != nil {
					errs[u] = append(errs[u], ctx.Err())
					return
				}
				it, like := rng.IntN(l.items), rng.IntN(3) != 0
				ref := &counterv1.ItemRef{Namespace: l.ns, Id: l.item(it)}
				var changed bool
				var err error
				if like {
					var r *connect.Response[counterv1.LikeResponse]
					if r, err = c.Like(ctx, as(t, l.s, user, &counterv1.LikeRequest{Item: ref})); err == nil {
						changed = r.Msg.GetChanged()
					}
				} else {
					var r *connect.Response[counterv1.UnlikeResponse]
					if r, err = c.Unlike(ctx, as(t, l.s, user, &counterv1.UnlikeRequest{Item: ref})); err == nil {
						changed = r.Msg.GetChanged()
					}
				}
				if err != nil {
					errs[u] = append(errs[u], fmt.Errorf("%s like=%v %s: %w", user, like, ref.GetId(), err))
					return // the outcome is unknown: this user stops
				}
				l.acked.Add(1)
				if want := st[it] != like; changed != want {
					errs[u] = append(errs[u], fmt.Errorf("%s like=%v %s: changed=%v, want %v", user, like, ref.GetId(), changed, want))
				}
				st[it] = like
			}
		})
	}
	wg.Wait()
	want := map[string]int64{}
	var all []error
	for u, st := range states {
		all = append(all, errs[u]...)
		for it, on := range st {
			if on {
				want[l.item(it)]++
			}
		}
	}
	return want, all
}

// counts reads every item's like count through the gateway (GetCounts,
// one request of up to 500 items) and checks it against want.
func (l *likeLoad) counts(ctx context.Context, want map[string]int64) (map[string]int64, error) {
	req := &counterv1.GetCountsRequest{}
	for i := range l.items {
		req.Items = append(req.Items, &counterv1.ItemRef{Namespace: l.ns, Id: l.item(i)})
	}
	resp, err := l.s.counters().GetCounts(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, err
	}
	got := map[string]int64{}
	for _, c := range resp.Msg.GetCounts() {
		if c.GetLikes() != want[c.GetItem().GetId()] {
			return nil, fmt.Errorf("GetCounts of %s = %d, the acknowledged answers imply %d", c.GetItem().GetId(), c.GetLikes(), want[c.GetItem().GetId()])
		}
		if c.GetLikes() != 0 {
			got[c.GetItem().GetId()] = c.GetLikes()
		}
	}
	return got, nil
}

// ranking is counts as a ranking: "item=score" of the positive scores,
// score descending, then item id ascending.
func ranking(counts map[string]int64) []string {
	ids := make([]string, 0, len(counts))
	for id, n := range counts {
		if n > 0 {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b string) int {
		if counts[a] != counts[b] {
			if counts[a] > counts[b] {
				return -1
			}
			return 1
		}
		if a < b {
			return -1
		}
		return 1
	})
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id + "=" + strconv.FormatInt(counts[id], 10)
	}
	return out
}

// checkRankings waits (bounded) until the analytics group drained the
// topic and the all-time and hour rankings through the gateway, paged
// with page tokens, equal the sorted GetCounts, which must equal what the
// acknowledged answers imply.
func (l *likeLoad) checkRankings(t *testing.T, want map[string]int64) {
	t.Helper()
	ctx := context.Background()
	counts, err := l.counts(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	expect := ranking(counts)
	t.Logf("%d items liked, top %v", len(expect), expect[:min(3, len(expect))])
	for _, w := range []analyticsv1.Window{analyticsv1.Window_WINDOW_ALL_TIME, analyticsv1.Window_WINDOW_HOUR} {
		start := time.Now()
		testenv.EventuallyNoError(t, 180*time.Second, w.String()+" ranking equal to the sorted GetCounts", func() error {
			lag, err := l.s.analyticsLag(ctx)
			if err != nil {
				return err
			}
			if lag > 0 {
				return fmt.Errorf("analytics is %d messages behind", lag)
			}
			got, err := topAll(ctx, l.s.analyticsClient(), l.ns, w, 37)
			if err != nil {
				return err
			}
			if !slices.Equal(got, expect) {
				return fmt.Errorf("ranking of %d items, GetCounts %d; first difference %s", len(got), len(expect), firstDiff(got, expect))
			}
			return nil
		})
		t.Logf("%s equal after %s", w, time.Since(start).Round(time.Millisecond))
	}
	// Still equal once the counter's answers are read again: nothing
	// arrived late.
	if _, err := l.counts(ctx, want); err != nil {
		t.Fatal(err)
	}
}

func firstDiff(got, want []string) string {
	for i := range max(len(got), len(want)) {
		g, w := "(none)", "(none)"
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			return fmt.Sprintf("at %d: %s, want %s", i, g, w)
		}
	}
	return "none"
}

// TestAnalyticsOracleThroughGateway: 10,000 random likes and unlikes by
// 200 users over 500 items, sent through the gateway over Connect (JSON),
// gRPC and gRPC-Web to the counter process, relayed to Kafka and applied
// by the analytics process: once drained, the all-time TopItems paged
// through with page tokens equals the sorted GetCounts exactly (and the
// hour ranking too, every event being minutes old). Then the same with the
// analytics process killed with SIGKILL mid-run and started again: nothing
// counted twice, nothing lost.
func TestAnalyticsOracleThroughGateway(t *testing.T) {
	s := startStack(t, stackVars{analytics: map[string]string{"HGP_ANALYTICS_BATCH_MAX": "100"}})

	t.Run("drained", func(t *testing.T) {
		l := &likeLoad{s: s, ns: "oracle", users: 200, items: 500, ops: 50, seed: 1}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		start := time.Now()
		want, errs := l.run(t, ctx)
		if len(errs) > 0 {
			t.Fatalf("%d failed requests, first: %v", len(errs), errs[0])
		}
		t.Logf("%d requests acknowledged in %s", l.acked.Load(), time.Since(start).Round(time.Millisecond))
		l.checkRankings(t, want)
	})

	t.Run("analytics killed mid-run", func(t *testing.T) {
		l := &likeLoad{s: s, ns: "oracle-kill", users: 200, items: 500, ops: 50, seed: 2}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		type result struct {
			want map[string]int64
			errs []error
		}
		done := make(chan result, 1)
		go func() {
			w, e := l.run(t, ctx)
			done <- result{w, e}
		}()
		// Kill once analytics applied part of the run, while writes go on.
		testenv.EventuallyNoError(t, 120*time.Second, "analytics applying part of the run", func() error {
			resp, err := s.direct().TopItems(ctx, connect.NewRequest(&analyticsv1.TopItemsRequest{
				Namespace: l.ns, Window: analyticsv1.Window_WINDOW_ALL_TIME, Limit: 100}))
			if err != nil {
				return err
			}
			if n := len(resp.Msg.GetItems()); n < 50 || l.acked.Load() < 2000 {
				return fmt.Errorf("%d items ranked, %d requests acknowledged", n, l.acked.Load())
			}
			return nil
		})
		s.analytics.Kill9()
		killedAt := l.acked.Load()
		lag, _ := s.analyticsLag(ctx)
		t.Logf("analytics killed with SIGKILL after %d acknowledged requests, %d messages uncommitted", killedAt, lag)
		// Writes go on while analytics is down.
		testenv.EventuallyNoError(t, 120*time.Second, "writes while analytics is down", func() error {
			if a := l.acked.Load(); a < killedAt+1000 && a < 10000 {
				return fmt.Errorf("%d acknowledged", a)
			}
			return nil
		})
		s.analytics.Start(t)
		t.Logf("analytics restarted after %d acknowledged requests", l.acked.Load())
		var res result
		select {
		case res = <-done:
		case <-time.After(5 * time.Minute):
			t.Fatal("the load did not end")
		}
		if len(res.errs) > 0 {
			t.Fatalf("%d failed requests, first: %v", len(res.errs), res.errs[0])
		}
		l.checkRankings(t, res.want)
	})
}
