package telemetry_test

import (
	"context"
	"errors"
	"testing"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/server"
)

// fake answers Like, rejects GetCounts with InvalidArgument, streams two
// messages then fails WatchCounts with ResourceExhausted.
type fake struct {
	counterv1connect.UnimplementedCounterServiceHandler
}

func (fake) Like(context.Context, *connect.Request[counterv1.LikeRequest]) (*connect.Response[counterv1.LikeResponse], error) {
	return connect.NewResponse(&counterv1.LikeResponse{Changed: true, Count: 1}), nil
}

func (fake) GetCounts(context.Context, *connect.Request[counterv1.GetCountsRequest]) (*connect.Response[counterv1.GetCountsResponse], error) {
	return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("bad items"))
}

func (fake) WatchCounts(_ context.Context, _ *connect.Request[counterv1.WatchCountsRequest], s *connect.ServerStream[counterv1.WatchCountsResponse]) error {
	for range 2 {
		if err := s.Send(&counterv1.WatchCountsResponse{}); err != nil {
			return err
		}
	}
	return connect.NewError(connect.CodeResourceExhausted, errors.New("too many watchers"))
}

// TestMiddlewareCountsEveryProtocolAndCode serves a fake counter through
// server.New (which puts the middleware in front) and checks the code
// recorded for success, a unary error, a stream ending in an error and an
// unknown path, over Connect, gRPC and gRPC-Web.
func TestMiddlewareCountsEveryProtocolAndCode(t *testing.T) {
	s := server.New(logging.Discard(), []string{counterv1connect.CounterServiceName})
	s.Handle(counterv1connect.NewCounterServiceHandler(fake{}))
	url, hc := rpctest.Serve(t, s.Handler())
	const (
		like  = "/" + counterv1connect.CounterServiceName + "/Like"
		get   = "/" + counterv1connect.CounterServiceName + "/GetCounts"
		watch = "/" + counterv1connect.CounterServiceName + "/WatchCounts"
	)
	labels := map[string]string{"connect-json": "connect", "grpc": "grpc", "grpc-web": "grpc_web"}
	for _, p := range rpctest.Protocols {
		t.Run(p.Name, func(t *testing.T) {
			proto := labels[p.Name]
			before := map[string]float64{
				"like":  counterFor(like, proto, "ok"),
				"get":   counterFor(get, proto, "invalid_argument"),
				"watch": counterFor(watch, proto, "resource_exhausted"),
				"other": counterFor("unknown", proto, "unimplemented"),
			}
			client := counterv1connect.NewCounterServiceClient(hc, url, p.Opts...)
			follow := counterv1connect.NewFollowServiceClient(hc, url, p.Opts...)
			ctx := context.Background()
			if _, err := client.Like(ctx, connect.NewRequest(&counterv1.LikeRequest{})); err != nil {
				t.Fatalf("Like: %v", err)
			}
			if _, err := client.GetCounts(ctx, connect.NewRequest(&counterv1.GetCountsRequest{})); connect.CodeOf(err) != connect.CodeInvalidArgument {
				t.Fatalf("GetCounts: %v", err)
			}
			st, err := client.WatchCounts(ctx, connect.NewRequest(&counterv1.WatchCountsRequest{}))
			if err != nil {
				t.Fatalf("WatchCounts: %v", err)
			}
			for st.Receive() {
			}
			if connect.CodeOf(st.Err()) != connect.CodeResourceExhausted {
				t.Fatalf("WatchCounts ended with %v", st.Err())
			}
			_ = st.Close()
			if _, err := follow.Follow(ctx, connect.NewRequest(&counterv1.FollowRequest{})); connect.CodeOf(err) != connect.CodeUnimplemented {
				t.Fatalf("Follow on a server without FollowService: %v", err)
			}
			got := map[string]float64{
				"like":  counterFor(like, proto, "ok"),
				"get":   counterFor(get, proto, "invalid_argument"),
				"watch": counterFor(watch, proto, "resource_exhausted"),
				"other": counterFor("unknown", proto, "unimplemented"),
			}
			for k := range got {
				if got[k]-before[k] != 1 {
					t.Errorf("%s: counted %v times, want 1", k, got[k]-before[k])
				}
			}
			if n := observations(like, proto); n < 1 {
				t.Errorf("latency of %s over %s: %d observations", like, proto, n)
			}
		})
	}
}

func counterFor(proc, proto, code string) float64 {
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		return -1
	}
	for _, mf := range mfs {
		if mf.GetName() != "hgp_rpc_server_requests_total" {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			want := map[string]string{"procedure": proc, "protocol": proto, "code": code}
			for _, l := range m.GetLabel() {
				if want[l.GetName()] != l.GetValue() {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func observations(proc, proto string) uint64 {
	mfs, _ := prometheus.DefaultGatherer.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "hgp_rpc_server_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["procedure"] == proc && l["protocol"] == proto {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}
