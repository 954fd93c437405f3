package gateway_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/gateway"
)

// watchingBackend answers GetCounts and keeps WatchCounts streams open
// after a first message until the client leaves.
type watchingBackend struct {
	counterv1connect.UnimplementedCounterServiceHandler
}

func (watchingBackend) GetCounts(context.Context, *connect.Request[counterv1.GetCountsRequest]) (*connect.Response[counterv1.GetCountsResponse], error) {
	return connect.NewResponse(&counterv1.GetCountsResponse{}), nil
}

func (watchingBackend) WatchCounts(ctx context.Context, _ *connect.Request[counterv1.WatchCountsRequest], s *connect.ServerStream[counterv1.WatchCountsResponse]) error {
	if err := s.Send(&counterv1.WatchCountsResponse{}); err != nil {
		return err
	}
	<-ctx.Done()
	return ctx.Err()
}

// metricValue reads one series of the default registry (0 when absent).
func metricValue(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue series
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// TestUpstreamMetrics: with a dead instance listed next to a live one,
// reads through the gateway all succeed, and the gateway counts the dead
// instance's failed attempt, its ejection and the retry on the live one;
// a forwarded WatchCounts stream is in the streams gauge while it lasts.
func TestUpstreamMetrics(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle(counterv1connect.NewCounterServiceHandler(watchingBackend{}))
	live, _ := rpctest.Serve(t, mux)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close() // connections to it are refused
	cfg := baseConfig(live)
	cfg.CounterURLs = nil // round robin from the first: the dead one
	for _, s := range []string{dead, live} {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		cfg.CounterURLs = append(cfg.CounterURLs, u)
	}
	g, err := gateway.New(logging.Discard(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	base, hc := rpctest.Serve(t, g.Server().Handler())

	counter := map[string]string{"service": "counter"}
	result := func(r string) map[string]string { return map[string]string{"service": "counter", "result": r} }
	before := map[string]float64{
		"retries":   metricValue(t, "hgp_gateway_upstream_retries_total", counter),
		"ejections": metricValue(t, "hgp_gateway_upstream_ejections_total", counter),
		"failures":  metricValue(t, "hgp_gateway_upstream_attempts_total", result("instance_failure")),
		"ok":        metricValue(t, "hgp_gateway_upstream_attempts_total", result("ok")),
		"streams":   metricValue(t, "hgp_gateway_upstream_streams", counter),
	}
	client := counterv1connect.NewCounterServiceClient(hc, base)
	for range 4 {
		if _, err := client.GetCounts(context.Background(), connect.NewRequest(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item("a")}})); err != nil {
			t.Fatalf("GetCounts with one dead instance: %v", err)
		}
	}
	delta := func(name, key string, labels map[string]string) float64 {
		return metricValue(t, name, labels) - before[key]
	}
	if d := delta("hgp_gateway_upstream_retries_total", "retries", counter); d != 1 {
		t.Errorf("retries rose by %v; want 1 (the dead instance is tried once, then skipped)", d)
	}
	if d := delta("hgp_gateway_upstream_ejections_total", "ejections", counter); d != 1 {
		t.Errorf("ejections rose by %v; want 1", d)
	}
	if d := delta("hgp_gateway_upstream_attempts_total", "failures", result("instance_failure")); d != 1 {
		t.Errorf("instance failures rose by %v; want 1", d)
	}
	if d := delta("hgp_gateway_upstream_attempts_total", "ok", result("ok")); d != 4 {
		t.Errorf("ok attempts rose by %v; want 4", d)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := client.WatchCounts(ctx, connect.NewRequest(&counterv1.WatchCountsRequest{Items: []*counterv1.ItemRef{item("a")}}))
	if err != nil {
		t.Fatal(err)
	}
	if !stream.Receive() {
		t.Fatalf("no first message: %v", stream.Err())
	}
	if d := delta("hgp_gateway_upstream_streams", "streams", counter); d != 1 {
		t.Fatalf("forwarded streams gauge rose by %v with one stream open; want 1", d)
	}
	cancel()
	for stream.Receive() {
	}
	if err := stream.Err(); !errors.Is(err, context.Canceled) && connect.CodeOf(err) != connect.CodeCanceled {
		t.Logf("stream ended with %v", err)
	}
	testenv.Eventually(t, 20*time.Second, "the streams gauge falls back when the stream ends", func() bool {
		return delta("hgp_gateway_upstream_streams", "streams", counter) == 0
	})
}
