package gateway_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/bootstrap"
	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/gateway"
)

// TestConsulAgentStopped: the gateway routes through a private Consul agent
// to two real counters; the agent is killed. The gateway keeps serving
// reads and writes from the instances it last learned (the watcher reports
// itself stale), on every protocol.
func TestConsulAgentStopped(t *testing.T) {
	redisAddr := testenv.RedisAddr(t)
	agent := testenv.StartConsulAgent(t)
	vars := map[string]string{"HGP_CONSUL_ADDR": agent.Addr(), "HGP_CONSUL_CHECK_INTERVAL": "1s"}
	c1 := startCounter(t, redisAddr, vars)
	c2 := startCounter(t, redisAddr, vars)
	gw := startGateway(t, map[string]string{"HGP_CONSUL_ADDR": agent.Addr(), "HGP_RATE_ENABLED": "false"})
	both := []string{c1.addr, c2.addr}
	slices.Sort(both)
	testenv.Eventually(t, 20*time.Second, "gateway's watcher lists both counters", func() bool {
		return slices.Equal(gw.g.Instances("counter"), both)
	})
	rdb := counterRedis(t, redisAddr)
	itemID := unique("consuldown")
	t.Cleanup(func() { dropItemKeys(rdb, "article", itemID) })

	calls := func(phase string, users int) {
		t.Helper()
		ctx := context.Background()
		for _, p := range rpctest.Protocols {
			anon := counterv1connect.NewCounterServiceClient(gw.client, gw.url, p.Opts...)
			for i := range users {
				user := fmt.Sprintf("%s-%s-%d", phase, p.Name, i)
				cs := counterv1connect.NewCounterServiceClient(gw.client, gw.url, append(p.Opts, withHeaders(bearer(token(t, user))))...)
				if _, err := cs.Like(ctx, connect.NewRequest(&counterv1.LikeRequest{Item: item(itemID)})); err != nil {
					t.Fatalf("%s: Like over %s: %v", phase, p.Name, err)
				}
				if _, err := anon.GetCounts(ctx, connect.NewRequest(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item(itemID)}})); err != nil {
					t.Fatalf("%s: GetCounts over %s: %v", phase, p.Name, err)
				}
			}
		}
	}
	calls("before", 5)

	agent.Kill()
	testenv.Eventually(t, 20*time.Second, "watcher notices consul is gone", func() bool {
		st := gw.g.Stats()
		if st.Backends == nil || len(st.Backends.Watchers) != 2 { // counter and analytics
			return false
		}
		for _, w := range st.Backends.Watchers {
			if !w.Stale {
				return false
			}
		}
		return true
	})
	if got := gw.g.Instances("counter"); !slices.Equal(got, both) {
		t.Fatalf("instances after consul died: %v, want the last known %v", got, both)
	}
	calls("after", 10)

	res, err := counterv1connect.NewCounterServiceClient(gw.client, gw.url).GetCounts(context.Background(),
		connect.NewRequest(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item(itemID)}}))
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(3 * (5 + 10)); res.Msg.GetCounts()[0].GetLikes() != want {
		t.Fatalf("likes = %d, want %d", res.Msg.GetCounts()[0].GetLikes(), want)
	}
	st := gw.g.Stats().Backends
	if st.Watchers[0].Errors == 0 || st.Balancer.Picks < 3*2*15 {
		t.Fatalf("stats %+v", st)
	}
}

// TestBuildRoutesThroughConsul: gateway.Build, as cmd/gateway runs it, with
// HGP_CONSUL_ADDR and no static URLs, routes to a counter it learns from
// Consul; before the counter is up, calls are Unavailable.
func TestBuildRoutesThroughConsul(t *testing.T) {
	consulAddr := testenv.ConsulAddr(t)
	redisAddr := testenv.RedisAddr(t)
	tag := unique("gwbuild")
	comp, err := gateway.Build(context.Background(), testLogger(t, "gateway"), config.FromMap(gatewayVars(map[string]string{
		"HGP_CONSUL_ADDR":        consulAddr,
		"HGP_GATEWAY_CONSUL_TAG": tag,
		"HGP_REDIS_ADDR":         redisAddr,
		"HGP_RATE_KEY_PREFIX":    unique("hgp:gwtest:rl"),
	})))
	if err != nil {
		t.Fatal(err)
	}
	if len(comp.Workers) != 4 { // the Consul watchers, the stream shutdown, the API statistics flusher, the configuration centre's watcher
		t.Fatalf("%d workers", len(comp.Workers))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	comp.Listener = ln
	testenv.Background(t, func(ctx context.Context) error { return bootstrap.Run(ctx, logging.Discard(), comp) })
	url := "http://" + ln.Addr().String()
	client := server.NewH2CClient()
	cs := counterv1connect.NewCounterServiceClient(client, url, withHeaders(bearer(token(t, "builder"))))
	itemID := unique("build")
	like := func() (*connect.Response[counterv1.LikeResponse], error) {
		return cs.Like(context.Background(), connect.NewRequest(&counterv1.LikeRequest{Item: item(itemID)}))
	}
	_, err = like()
	wantCode(t, err, connect.CodeUnavailable, "no backend available")

	startCounter(t, redisAddr, map[string]string{"HGP_CONSUL_ADDR": consulAddr, "HGP_CONSUL_TAGS": tag})
	rdb := counterRedis(t, redisAddr)
	t.Cleanup(func() { dropItemKeys(rdb, "article", itemID) })
	var res *connect.Response[counterv1.LikeResponse]
	testenv.Eventually(t, 20*time.Second, "the gateway routes to the counter", func() bool {
		res, err = like()
		return err == nil
	})
	if res.Msg.GetCount() != 1 || res.Header().Get("RateLimit-Remaining") == "" {
		t.Fatalf("Like = %v, headers %v", res.Msg, res.Header())
	}
}
