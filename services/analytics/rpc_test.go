package analytics_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"connectrpc.com/connect"

	analyticsv1 "github.com/highgopress/highgopress/gen/highgopress/analytics/v1"
	"github.com/highgopress/highgopress/gen/highgopress/analytics/v1/analyticsv1connect"
	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/analytics/internal/antest"
	"github.com/highgopress/highgopress/services/analytics/watch"
)

// TestRPCsOverEveryProtocol: TopItems, ApiStats and WatchTopItems over
// Connect (JSON), gRPC and gRPC-Web; a stream sees the current ranking,
// then the change; bad input is invalid_argument; closing streams returns
// the goroutines and subscriptions.
func TestRPCsOverEveryProtocol(t *testing.T) {
	e := startWith(t, false)
	ctx := context.Background()
	now := time.Now()
	if _, err := e.a.Store().Apply(ctx, []*eventsv1.Event{
		antest.Like(true, ns, "first", "u1", antest.Version(now, 1), now),
		antest.Like(true, ns, "first", "u2", antest.Version(now, 2), now),
		antest.Like(true, ns, "second", "u1", antest.Version(now, 3), now),
		antest.APICall("s1", "/p.v1.S/M", "ok", 4, now, map[int32]int64{80: 4}),
	}); err != nil {
		t.Fatal(err)
	}
	// The baseline is taken once the change listener is subscribed.
	testenv.Eventually(t, 15*time.Second, "listener subscribed", func() bool {
		n, err := e.rdb.PubSubNumSub(ctx, e.a.Store().Channel()).Result()
		return err == nil && n[e.a.Store().Channel()] == 1
	})
	base := runtime.NumGoroutine()
	seq := uint64(10)
	for _, p := range rpctest.Protocols {
		t.Run(p.Name, func(t *testing.T) {
			c := analyticsv1connect.NewAnalyticsServiceClient(e.client, e.url, p.Opts...)
			top, err := c.TopItems(ctx, connect.NewRequest(&analyticsv1.TopItemsRequest{Namespace: ns, Window: analyticsv1.Window_WINDOW_HOUR, Limit: 1}))
			if err != nil {
				t.Fatal(err)
			}
			if it := top.Msg.GetItems(); len(it) != 1 || it[0].GetItemId() != "first" || it[0].GetScore() != 2 || top.Msg.GetNextPageToken() == "" || top.Msg.GetAsOf() == nil {
				t.Fatalf("TopItems: %v", top.Msg)
			}
			next, err := c.TopItems(ctx, connect.NewRequest(&analyticsv1.TopItemsRequest{Namespace: ns, Window: analyticsv1.Window_WINDOW_HOUR, Limit: 1, PageToken: top.Msg.GetNextPageToken()}))
			if err != nil || len(next.Msg.GetItems()) != 1 || next.Msg.GetItems()[0].GetRank() != 2 {
				t.Fatalf("second page: %v %v", next, err)
			}
			stats, err := c.ApiStats(ctx, connect.NewRequest(&analyticsv1.ApiStatsRequest{Window: analyticsv1.StatsWindow_STATS_WINDOW_HOUR}))
			if err != nil {
				t.Fatal(err)
			}
			if ps := stats.Msg.GetProcedures(); len(ps) != 1 || ps[0].GetCalls() != 4 || ps[0].GetCodes()[0].GetCode() != "ok" || ps[0].GetLatency().GetP99Ms() < 0.9 || ps[0].GetLatency().GetP99Ms() > 1.1 {
				t.Fatalf("ApiStats: %v", stats.Msg)
			}
			for name, req := range map[string]*analyticsv1.TopItemsRequest{
				"window":    {Namespace: ns},
				"limit":     {Namespace: ns, Window: analyticsv1.Window_WINDOW_DAY, Limit: 101},
				"namespace": {Namespace: "Bad NS", Window: analyticsv1.Window_WINDOW_DAY},
				"token":     {Namespace: ns, Window: analyticsv1.Window_WINDOW_DAY, PageToken: "garbage!"},
			} {
				if _, err := c.TopItems(ctx, connect.NewRequest(req)); connect.CodeOf(err) != connect.CodeInvalidArgument {
					t.Errorf("bad %s: %v, want invalid_argument", name, err)
				}
			}
			if _, err := c.ApiStats(ctx, connect.NewRequest(&analyticsv1.ApiStatsRequest{})); connect.CodeOf(err) != connect.CodeInvalidArgument {
				t.Errorf("ApiStats without window: %v", err)
			}
			bad, err := c.WatchTopItems(ctx, connect.NewRequest(&analyticsv1.WatchTopItemsRequest{Namespace: ns, Limit: 5}))
			if err == nil {
				for bad.Receive() {
				}
				err = bad.Err()
				_ = bad.Close()
			}
			if connect.CodeOf(err) != connect.CodeInvalidArgument {
				t.Errorf("WatchTopItems without window: %v", err)
			}

			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stream, err := c.WatchTopItems(sctx, connect.NewRequest(&analyticsv1.WatchTopItemsRequest{Namespace: ns, Window: analyticsv1.Window_WINDOW_HOUR, Limit: 5}))
			if err != nil {
				t.Fatal(err)
			}
			if !stream.Receive() {
				t.Fatalf("no first ranking: %v", stream.Err())
			}
			if it := stream.Msg().GetItems(); len(it) < 2 || it[0].GetItemId() != "first" {
				t.Fatalf("first ranking %v", stream.Msg())
			}
			seq++
			item := "new-" + p.Name
			if _, err := e.a.Store().Apply(ctx, []*eventsv1.Event{antest.Like(true, ns, item, "u9", antest.Version(now, seq), now)}); err != nil {
				t.Fatal(err)
			}
			found := false
			for !found && stream.Receive() {
				for _, it := range stream.Msg().GetItems() {
					found = found || it.GetItemId() == item
				}
			}
			if !found {
				t.Fatalf("the stream did not show %s: %v", item, stream.Err())
			}
			cancel()
			_ = stream.Close()
		})
	}
	testenv.Eventually(t, 15*time.Second, "subscriptions released", func() bool { return e.a.Hub().Subscriptions() == 0 })
	testenv.EventuallyNoError(t, 15*time.Second, "goroutines back to the baseline", func() error {
		e.client.CloseIdleConnections()
		if n := runtime.NumGoroutine(); n > base {
			buf := make([]byte, 1<<20)
			return fmt.Errorf("goroutines: %d, baseline %d\n%s", n, base, buf[:runtime.Stack(buf, true)])
		}
		return nil
	})
}

// TestWatchCapsPerClient: the per-client cap answers resource_exhausted,
// and the clients the gateway names in X-Forwarded-For count separately.
func TestWatchCapsPerClient(t *testing.T) {
	e := startWith(t, false, analyticsWatch(watch.WithLimits(2, 100)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := analyticsv1connect.NewAnalyticsServiceClient(e.client, e.url)
	open := func(client string) error {
		req := connect.NewRequest(&analyticsv1.WatchTopItemsRequest{Namespace: ns, Window: analyticsv1.Window_WINDOW_DAY})
		req.Header().Set("X-Forwarded-For", "203.0.113.1, "+client)
		s, err := c.WatchTopItems(ctx, req)
		if err != nil {
			return err
		}
		if !s.Receive() {
			return s.Err()
		}
		return nil
	}
	for range 2 {
		if err := open("198.51.100.7"); err != nil {
			t.Fatal(err)
		}
	}
	if err := open("198.51.100.7"); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("third stream of one client: %v, want resource_exhausted", err)
	}
	if err := open("198.51.100.8"); err != nil {
		t.Fatalf("another client: %v", err)
	}
}
