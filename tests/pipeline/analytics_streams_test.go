package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"

	analyticsv1 "github.com/highgopress/highgopress/gen/highgopress/analytics/v1"
	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/testenv"
)

// TestAnalyticsRPCsThroughGateway: every AnalyticsService RPC and the
// counter's WatchCounts, over Connect (JSON), gRPC and gRPC-Web, through
// the gateway to the real processes: a like made through the gateway
// reaches a WatchCounts stream and a WatchTopItems stream (hour window)
// opened before it, TopItems and ApiStats answer it, and bad input is
// invalid_argument on every protocol, streams included.
func TestAnalyticsRPCsThroughGateway(t *testing.T) {
	s := startStack(t, stackVars{gateway: map[string]string{"HGP_APISTATS_FLUSH_INTERVAL": "200ms"}})
	for _, p := range protocols {
		t.Run(p.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			ns, id := "rpc-"+p.Name, "hot"
			ref := &counterv1.ItemRef{Namespace: ns, Id: id}
			cc, ac := s.counters(p.Opts...), s.analyticsClient(p.Opts...)

			counts, err := cc.WatchCounts(ctx, connect.NewRequest(&counterv1.WatchCountsRequest{Items: []*counterv1.ItemRef{ref}}))
			if err != nil {
				t.Fatal(err)
			}
			defer counts.Close()
			if !counts.Receive() {
				t.Fatalf("WatchCounts: no first message: %v", counts.Err())
			}
			if first := counts.Msg().GetCounts(); len(first) != 1 || first[0].GetLikes() != 0 {
				t.Fatalf("WatchCounts first message %v, want %s with 0 likes", first, id)
			}
			top, err := ac.WatchTopItems(ctx, connect.NewRequest(&analyticsv1.WatchTopItemsRequest{Namespace: ns, Window: analyticsv1.Window_WINDOW_HOUR, Limit: 5}))
			if err != nil {
				t.Fatal(err)
			}
			defer top.Close()
			if !top.Receive() {
				t.Fatalf("WatchTopItems: no first message: %v", top.Err())
			}
			if first := top.Msg().GetItems(); len(first) != 0 {
				t.Fatalf("WatchTopItems first ranking %v, want empty", first)
			}

			liked := time.Now()
			resp, err := cc.Like(ctx, as(t, s, "rpc-user", &counterv1.LikeRequest{Item: ref}))
			if err != nil || !resp.Msg.GetChanged() || resp.Msg.GetCount() != 1 {
				t.Fatalf("like: %v %v", resp, err)
			}
			for counts.Receive() {
				if c := counts.Msg().GetCounts(); len(c) == 1 && c[0].GetItem().GetId() == id && c[0].GetLikes() == 1 {
					break
				}
			}
			if counts.Err() != nil {
				t.Fatalf("WatchCounts ended before the like arrived: %v", counts.Err())
			}
			t.Logf("like → WatchCounts in %s", time.Since(liked).Round(time.Millisecond))
			for top.Receive() {
				if items := top.Msg().GetItems(); len(items) == 1 && items[0].GetItemId() == id && items[0].GetScore() == 1 && items[0].GetRank() == 1 {
					break
				}
			}
			if top.Err() != nil {
				t.Fatalf("WatchTopItems ended before the like arrived: %v", top.Err())
			}
			t.Logf("like → WatchTopItems (hour) in %s", time.Since(liked).Round(time.Millisecond))

			for _, w := range []analyticsv1.Window{analyticsv1.Window_WINDOW_HOUR, analyticsv1.Window_WINDOW_DAY, analyticsv1.Window_WINDOW_WEEK, analyticsv1.Window_WINDOW_ALL_TIME} {
				testenv.EventuallyNoError(t, 30*time.Second, "TopItems "+w.String(), func() error {
					got, err := topAll(ctx, ac, ns, w, 10)
					if err != nil {
						return err
					}
					if !slices.Equal(got, []string{id + "=1"}) {
						return fmt.Errorf("ranking %v", got)
					}
					return nil
				})
			}
			testenv.EventuallyNoError(t, 30*time.Second, "ApiStats listing the like", func() error {
				resp, err := ac.ApiStats(ctx, connect.NewRequest(&analyticsv1.ApiStatsRequest{
					Window: analyticsv1.StatsWindow_STATS_WINDOW_MINUTE, Procedure: counterv1connect.CounterServiceLikeProcedure}))
				if err != nil {
					return err
				}
				for _, ps := range resp.Msg.GetProcedures() {
					if ps.GetProcedure() != counterv1connect.CounterServiceLikeProcedure {
						return fmt.Errorf("asked for Like, got %s", ps.GetProcedure())
					}
					if ps.GetCalls() >= 1 && ps.GetLatency() != nil {
						return nil
					}
				}
				return fmt.Errorf("no Like in %v", resp.Msg.GetProcedures())
			})

			// Bad input: invalid_argument on every protocol, streams too.
			bad := map[string]error{}
			_, bad["TopItems limit 101"] = ac.TopItems(ctx, connect.NewRequest(&analyticsv1.TopItemsRequest{Namespace: ns, Window: analyticsv1.Window_WINDOW_HOUR, Limit: 101}))
			_, bad["TopItems no window"] = ac.TopItems(ctx, connect.NewRequest(&analyticsv1.TopItemsRequest{Namespace: ns}))
			_, bad["TopItems garbage token"] = ac.TopItems(ctx, connect.NewRequest(&analyticsv1.TopItemsRequest{Namespace: ns, Window: analyticsv1.Window_WINDOW_HOUR, PageToken: "garbage"}))
			_, bad["ApiStats unknown window"] = ac.ApiStats(ctx, connect.NewRequest(&analyticsv1.ApiStatsRequest{Window: 42}))
			bad["WatchTopItems bad namespace"] = streamErr(ac.WatchTopItems(ctx, connect.NewRequest(&analyticsv1.WatchTopItemsRequest{Namespace: "Bad NS", Window: analyticsv1.Window_WINDOW_HOUR})))
			bad["WatchCounts no items"] = streamErr(cc.WatchCounts(ctx, connect.NewRequest(&counterv1.WatchCountsRequest{})))
			for what, err := range bad {
				if connect.CodeOf(err) != connect.CodeInvalidArgument {
					t.Errorf("%s: %v, want invalid_argument", what, err)
				}
			}
		})
	}
}

// receiver is a server stream's client side.
type receiver interface {
	Receive() bool
	Err() error
	Close() error
}

// streamErr is how a stream that must fail at once ends.
func streamErr[S receiver](s S, err error) error {
	if err != nil {
		return err
	}
	defer s.Close()
	if s.Receive() {
		return errors.New("a message arrived instead of an error")
	}
	return s.Err()
}
