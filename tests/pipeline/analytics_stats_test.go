package pipeline_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	analyticsv1 "github.com/highgopress/highgopress/gen/highgopress/analytics/v1"
	"github.com/highgopress/highgopress/gen/highgopress/analytics/v1/analyticsv1connect"
	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/testenv"
)

// callLog is what a test sent through the gateway: calls per procedure
// and code as the client saw them, and the slowest call per procedure.
type callLog struct {
	mu    sync.Mutex
	calls map[string]map[string]int64 // procedure → code → calls
	slow  map[string]time.Duration
}

func newCallLog() *callLog {
	return &callLog{calls: map[string]map[string]int64{}, slow: map[string]time.Duration{}}
}

func codeOf(err error) string {
	if err == nil {
		return "ok"
	}
	return connect.CodeOf(err).String()
}

func (l *callLog) add(procedure string, err error, took time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.calls[procedure] == nil {
		l.calls[procedure] = map[string]int64{}
	}
	l.calls[procedure][codeOf(err)]++
	l.slow[procedure] = max(l.slow[procedure], took)
}

// interceptor records every unary call made through a client.
func (l *callLog) interceptor() connect.Option {
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			start := time.Now()
			resp, err := next(ctx, req)
			l.add(req.Spec().Procedure, err, time.Since(start))
			return resp, err
		}
	}))
}

// diff compares ApiStats procedures with the log; it returns "" when equal.
func (l *callLog) diff(procs []*analyticsv1.ProcedureStats) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	got := map[string]map[string]int64{}
	for _, p := range procs {
		codes := map[string]int64{}
		var sum int64
		for _, c := range p.GetCodes() {
			codes[c.GetCode()] = c.GetCalls()
			sum += c.GetCalls()
		}
		if sum != p.GetCalls() {
			return fmt.Sprintf("%s: %d calls, its codes sum to %d", p.GetProcedure(), p.GetCalls(), sum)
		}
		got[p.GetProcedure()] = codes
	}
	var out []string
	for _, proc := range slices.Sorted(maps.Keys(l.calls)) {
		if !maps.Equal(got[proc], l.calls[proc]) {
			out = append(out, fmt.Sprintf("%s: %v, sent %v", proc, got[proc], l.calls[proc]))
		}
	}
	for _, proc := range slices.Sorted(maps.Keys(got)) {
		if _, ok := l.calls[proc]; !ok {
			out = append(out, fmt.Sprintf("%s: %v, sent nothing", proc, got[proc]))
		}
	}
	return strings.Join(out, "; ")
}

// TestAnalyticsApiStatsThroughGateway: ApiStats read through the gateway
// equals, per procedure and code, the calls the test sent through it over
// Connect, gRPC and gRPC-Web — accepted ones, and rejected ones: no or a
// bad token (unauthenticated, 401), a user over its write budget
// (resource_exhausted, 429), bad input (invalid_argument, 400) — with
// latency percentiles ordered, positive and no larger than what the
// client measured.
func TestAnalyticsApiStatsThroughGateway(t *testing.T) {
	s := startStack(t, stackVars{gateway: map[string]string{
		"HGP_APISTATS_FLUSH_INTERVAL": "200ms",
		"HGP_RATE_WRITE_USER":         "5-M", // 5 writes per user and minute
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	log := newCallLog()
	// The calls startStack made through the gateway to see it route.
	for _, c := range s.probes {
		log.add(c.procedure, c.err, c.took)
	}
	expect := func(err error, code connect.Code, what string) {
		t.Helper()
		if code == 0 && err != nil || code != 0 && connect.CodeOf(err) != code {
			t.Fatalf("%s: %v, want %v", what, err, code)
		}
	}
	item := func(id string) *counterv1.ItemRef { return &counterv1.ItemRef{Namespace: "stats", Id: id} }
	for _, p := range protocols {
		cc := s.counters(append(p.Opts, log.interceptor())...)
		ac := s.analyticsClient(append(p.Opts, log.interceptor())...)
		user := "stats-" + p.Name
		_, err := cc.Like(ctx, as(t, s, user, &counterv1.LikeRequest{Item: item("a")}))
		expect(err, 0, p.Name+" like")
		_, err = cc.Like(ctx, as(t, s, user, &counterv1.LikeRequest{Item: item("a")}))
		expect(err, 0, p.Name+" like again")
		_, err = cc.Unlike(ctx, as(t, s, user, &counterv1.UnlikeRequest{Item: item("a")}))
		expect(err, 0, p.Name+" unlike")
		_, err = cc.GetCounts(ctx, as(t, s, "", &counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item("a")}}))
		expect(err, 0, p.Name+" anonymous get counts")
		_, err = cc.Like(ctx, as(t, s, "", &counterv1.LikeRequest{Item: item("a")}))
		expect(err, connect.CodeUnauthenticated, p.Name+" like without a token")
		bad := connect.NewRequest(&counterv1.LikeRequest{Item: item("a")})
		bad.Header().Set("Authorization", "Bearer not-a-token")
		_, err = cc.Like(ctx, bad)
		expect(err, connect.CodeUnauthenticated, p.Name+" like with a bad token")
		_, err = cc.Like(ctx, as(t, s, user, &counterv1.LikeRequest{Item: &counterv1.ItemRef{Namespace: "Bad Namespace", Id: "a"}}))
		expect(err, connect.CodeInvalidArgument, p.Name+" like of a bad item")
		_, err = ac.TopItems(ctx, connect.NewRequest(&analyticsv1.TopItemsRequest{Namespace: "stats", Window: analyticsv1.Window_WINDOW_HOUR, Limit: 101}))
		expect(err, connect.CodeInvalidArgument, p.Name+" top items limit 101")
		_, err = ac.TopItems(ctx, connect.NewRequest(&analyticsv1.TopItemsRequest{Namespace: "stats", Window: analyticsv1.Window_WINDOW_HOUR}))
		expect(err, 0, p.Name+" top items")
		// Over the budget of 5 writes a minute: 3 of 8 are refused.
		for i := range 8 {
			_, err = cc.Like(ctx, as(t, s, user+"-hot", &counterv1.LikeRequest{Item: item(fmt.Sprint("hot-", i))}))
			if i < 5 {
				expect(err, 0, p.Name+" write within the budget")
			} else {
				expect(err, connect.CodeResourceExhausted, p.Name+" write over the budget")
			}
		}
	}

	// Flushed every 200 ms by the gateway and applied by analytics; read
	// from analytics directly, so that the polling is not counted.
	testenv.EventuallyNoError(t, 90*time.Second, "ApiStats equal to the calls sent", func() error {
		resp, err := s.direct().ApiStats(ctx, connect.NewRequest(&analyticsv1.ApiStatsRequest{Window: analyticsv1.StatsWindow_STATS_WINDOW_HOUR}))
		if err != nil {
			return err
		}
		if d := log.diff(resp.Msg.GetProcedures()); d != "" {
			return fmt.Errorf("%s", d)
		}
		return nil
	})
	// Then through the gateway, over every protocol: the same (these
	// ApiStats calls are counted after they answered, not in them).
	apiStats := analyticsv1connect.AnalyticsServiceApiStatsProcedure
	for _, p := range protocols {
		resp, err := s.analyticsClient(p.Opts...).ApiStats(ctx, connect.NewRequest(&analyticsv1.ApiStatsRequest{Window: analyticsv1.StatsWindow_STATS_WINDOW_HOUR}))
		if err != nil {
			t.Fatalf("%s: ApiStats through the gateway: %v", p.Name, err)
		}
		var procs []*analyticsv1.ProcedureStats
		for _, ps := range resp.Msg.GetProcedures() {
			if ps.GetProcedure() != apiStats { // earlier protocols' reads may have been flushed
				procs = append(procs, ps)
			}
		}
		if d := log.diff(procs); d != "" {
			t.Fatalf("%s: ApiStats through the gateway differs from the calls sent: %s", p.Name, d)
		}
		for _, ps := range procs {
			l := ps.GetLatency()
			if l == nil {
				t.Fatalf("%s: no latency", ps.GetProcedure())
			}
			if !(l.GetP50Ms() > 0 && l.GetP50Ms() <= l.GetP90Ms() && l.GetP90Ms() <= l.GetP99Ms() && l.GetP99Ms() <= l.GetMaxMs()) {
				t.Fatalf("%s: latency not ordered and positive: %v", ps.GetProcedure(), l)
			}
			// The gateway's measure is part of the client's; a bucket's
			// middle is within 4.4 % of what it holds.
			if slow := log.slow[ps.GetProcedure()]; slow > 0 && l.GetMaxMs() > 1.05*float64(slow.Microseconds())/1000 {
				t.Fatalf("%s: max %.3f ms, slower than the slowest call the client saw (%s)", ps.GetProcedure(), l.GetMaxMs(), slow)
			}
		}
		t.Logf("%s: %d procedures equal to the calls sent; Like latency %v", p.Name, len(procs), latencyOf(procs, counterv1connect.CounterServiceLikeProcedure))
	}
}

func latencyOf(procs []*analyticsv1.ProcedureStats, proc string) *analyticsv1.Latency {
	for _, p := range procs {
		if p.GetProcedure() == proc {
			return p.GetLatency()
		}
	}
	return nil
}
