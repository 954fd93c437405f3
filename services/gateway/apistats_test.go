package gateway_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/gateway"
	"github.com/highgopress/highgopress/services/gateway/apistats"
)

// statSink collects flushed stats and refuses duplicate ids.
type statSink struct {
	mu      sync.Mutex
	stats   []apistats.Stat
	ids     map[string]bool
	publish int
	dupes   []string
}

func (s *statSink) Publish(_ context.Context, stats []apistats.Stat) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids == nil {
		s.ids = map[string]bool{}
	}
	s.publish++
	for _, st := range stats {
		if s.ids[st.ID] {
			s.dupes = append(s.dupes, st.ID)
		}
		s.ids[st.ID] = true
		s.stats = append(s.stats, st)
	}
	return nil
}

func (s *statSink) totals() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int64{}
	for _, st := range s.stats {
		out[st.Procedure+" "+st.Code] += st.Count
	}
	return out
}

// TestAPIStatsExactCounts: calls through a running gateway (rate limiting
// on, real Redis) over all three protocols are counted per procedure and
// result code — successes, the limiter's rejections, authentication
// failures, unknown procedures — exactly, across periodic flushes and the
// flush at shutdown; health checks are not counted.
func TestAPIStatsExactCounts(t *testing.T) {
	redisAddr := testenv.RedisAddr(t)
	sink := &statSink{}
	vars := rateVars(t, newFakeBackend().serve(t), redisAddr, unique("hgp:gwtest:rl"), map[string]string{
		"HGP_RATE_WRITE_USER":         "5-H",
		"HGP_APISTATS_FLUSH_INTERVAL": "100ms",
	})
	gw := startGateway(t, vars, gateway.WithStatsSink(sink))
	ctx := context.Background()
	likeReq := func() *connect.Request[counterv1.LikeRequest] {
		return connect.NewRequest(&counterv1.LikeRequest{Item: item("stats")})
	}
	for _, p := range rpctest.Protocols {
		user := counterv1connect.NewCounterServiceClient(gw.client, gw.url, append(p.Opts, withHeaders(bearer(token(t, unique("ok")))))...)
		anon := counterv1connect.NewCounterServiceClient(gw.client, gw.url, p.Opts...)
		for range 3 {
			if _, err := user.Like(ctx, likeReq()); err != nil {
				t.Fatal(err)
			}
		}
		for range 2 {
			if _, err := anon.GetCounts(ctx, connect.NewRequest(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item("stats")}})); err != nil {
				t.Fatal(err)
			}
		}
		_, err := anon.Like(ctx, likeReq())
		wantCode(t, err, connect.CodeUnauthenticated, "")
		unknown := connect.NewClient[counterv1.LikeRequest, counterv1.LikeResponse](gw.client, gw.url+"/highgopress.counter.v1.CounterService/Nope", p.Opts...)
		_, err = unknown.CallUnary(ctx, likeReq())
		wantCode(t, err, connect.CodeUnimplemented, "")
		hc := grpchealth.NewClient(gw.client, gw.url, p.Opts...)
		if _, err := hc.Check(ctx, &grpchealth.CheckRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	// A periodic flush happens while the gateway runs; what follows is
	// flushed at shutdown.
	testenv.Eventually(t, 10*time.Second, "a periodic flush", func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		return sink.publish > 0
	})
	limited := counterv1connect.NewCounterServiceClient(gw.client, gw.url, withHeaders(bearer(token(t, unique("lim")))))
	for i := range 7 {
		_, err := limited.Like(ctx, likeReq())
		if (i < 5) != (err == nil) {
			t.Fatalf("limited user's like %d: %v", i, err)
		}
	}
	gw.stop() // drains, then the final flush

	like, getCounts := counterv1connect.CounterServiceLikeProcedure, counterv1connect.CounterServiceGetCountsProcedure
	want := map[string]int64{
		like + " ok":                 3*3 + 5,
		like + " resource_exhausted": 2,
		like + " unauthenticated":    3,
		getCounts + " ok":            3 * 2,
		"<unknown> unimplemented":    3,
	}
	got := sink.totals()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("stats %v, want %v", got, want)
	}
	st := gw.g.Stats().APIStats
	if st.Recorded != st.Published || st.Pending != 0 || st.Dropped != 0 {
		t.Fatalf("recorder stats %+v", st)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.dupes) > 0 || sink.publish < 2 {
		t.Fatalf("%d flushes, duplicate stat ids %v", sink.publish, sink.dupes)
	}
	t.Logf("%d stats in %d flushes", len(sink.stats), sink.publish)
}
