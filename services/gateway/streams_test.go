package gateway_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"
	"github.com/hashicorp/consul/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	analyticsv1 "github.com/highgopress/highgopress/gen/highgopress/analytics/v1"
	"github.com/highgopress/highgopress/gen/highgopress/analytics/v1/analyticsv1connect"
	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/gateway"
)

// fakeAnalytics is a small AnalyticsService: fixed answers, and a
// WatchTopItems that sends the current ranking, then one message per
// value sent on rankings. cancelled receives once per stream that ended
// because its client went away.
type fakeAnalytics struct {
	analyticsv1connect.UnimplementedAnalyticsServiceHandler
	rankings  chan int64
	cancelled chan struct{}
}

func (f *fakeAnalytics) TopItems(_ context.Context, req *connect.Request[analyticsv1.TopItemsRequest]) (*connect.Response[analyticsv1.TopItemsResponse], error) {
	if req.Msg.GetLimit() > 100 {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("limit: at most 100"))
	}
	return connect.NewResponse(&analyticsv1.TopItemsResponse{Items: []*analyticsv1.RankedItem{
		{ItemId: "a1", Score: 7, Rank: 1}, {ItemId: "a2", Score: 3, Rank: 2},
	}}), nil
}

func (f *fakeAnalytics) ApiStats(context.Context, *connect.Request[analyticsv1.ApiStatsRequest]) (*connect.Response[analyticsv1.ApiStatsResponse], error) {
	return connect.NewResponse(&analyticsv1.ApiStatsResponse{Procedures: []*analyticsv1.ProcedureStats{
		{Procedure: counterv1connect.CounterServiceLikeProcedure, Calls: 42},
	}}), nil
}

func (f *fakeAnalytics) WatchTopItems(ctx context.Context, _ *connect.Request[analyticsv1.WatchTopItemsRequest], stream *connect.ServerStream[analyticsv1.WatchTopItemsResponse]) error {
	send := func(score int64) error {
		return stream.Send(&analyticsv1.WatchTopItemsResponse{
			Items: []*analyticsv1.RankedItem{{ItemId: "a1", Score: score, Rank: 1}}, AsOf: timestamppb.Now(),
		})
	}
	if err := send(0); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			f.cancelled <- struct{}{}
			return ctx.Err()
		case s := <-f.rankings:
			if err := send(s); err != nil {
				return err
			}
		}
	}
}

// registerAnalytics serves a fakeAnalytics and registers it in Consul as
// service "analytics" under tag; it is deregistered when the test ends.
func registerAnalytics(t *testing.T, consulAddr, tag string) *fakeAnalytics {
	t.Helper()
	f := &fakeAnalytics{rankings: make(chan int64), cancelled: make(chan struct{}, 16)}
	mux := http.NewServeMux()
	mux.Handle(analyticsv1connect.NewAnalyticsServiceHandler(f))
	u, _ := rpctest.Serve(t, mux)
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	host, portStr, err := net.SplitHostPort(parsed.Host)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(portStr)
	id := unique("analytics-fake")
	agent := consulAPI(t, consulAddr).Agent()
	if err := agent.ServiceRegister(&api.AgentServiceRegistration{
		ID: id, Name: "analytics", Tags: []string{tag}, Address: host, Port: port,
	}); err != nil {
		t.Fatalf("register analytics in consul: %v", err)
	}
	t.Cleanup(func() { _ = agent.ServiceDeregister(id) })
	return f
}

// streamEnv is two counter processes and a fake analytics service in
// Consul under one run's tag, and a gateway routing through Consul with
// short unary limits (attempt 1s, max timeout 2s, read timeout 1s) that a
// stream must outlive.
type streamEnv struct {
	gw        *runningGateway
	analytics *fakeAnalytics
	consul    string
}

func startStreamEnv(t *testing.T) *streamEnv {
	t.Helper()
	consulAddr := testenv.ConsulAddr(t)
	redisAddr := testenv.RedisAddr(t)
	tag := unique("gwstream")
	counterVars := map[string]string{
		"HGP_CONSUL_ADDR":           consulAddr,
		"HGP_CONSUL_CHECK_INTERVAL": "1s",
		"HGP_CONSUL_TAGS":           tag,
	}
	c1 := startCounter(t, redisAddr, counterVars)
	c2 := startCounter(t, redisAddr, counterVars)
	fa := registerAnalytics(t, consulAddr, tag)
	gw := startGateway(t, map[string]string{
		"HGP_CONSUL_ADDR":             consulAddr,
		"HGP_GATEWAY_CONSUL_TAG":      tag,
		"HGP_RATE_ENABLED":            "false",
		"HGP_GATEWAY_ATTEMPT_TIMEOUT": "1s",
		"HGP_GATEWAY_MAX_TIMEOUT":     "2s",
	}, gateway.WithServerOptions(server.WithReadTimeout(time.Second)))
	both := []string{c1.addr, c2.addr}
	slices.Sort(both)
	testenv.Eventually(t, 20*time.Second, "gateway lists both counters and the analytics instance", func() bool {
		return slices.Equal(gw.g.Instances("counter"), both) && len(gw.g.Instances("analytics")) == 1
	})
	return &streamEnv{gw: gw, analytics: fa, consul: consulAddr}
}

// watchClient is one way of watching through the gateway.
type watchClient struct {
	name string
	hc   *http.Client
	p    rpctest.Protocol
}

func watchClients(gw *runningGateway) []watchClient {
	var out []watchClient
	for _, p := range rpctest.Protocols {
		out = append(out, watchClient{p.Name + "/h2c", gw.client, p})
	}
	// HTTP/1.1: chunked responses, and the server's read timeout.
	out = append(out, watchClient{"connect-json/http1", gw.http1, rpctest.Protocols[0]},
		watchClient{"grpc-web/http1", gw.http1, rpctest.Protocols[2]})
	return out
}

// TestWatchCountsThroughGateway: WatchCounts over connect-json, gRPC and
// gRPC-Web (h2c and HTTP/1.1) through the gateway routing by Consul to two
// counter processes. The first message comes at once; the stream outlives
// the attempt timeout, the unary max timeout and the read timeout; each
// like made through the gateway (on either counter) arrives as its own
// message while the stream stays open; cancelling the client releases the
// counter's subscription.
func TestWatchCountsThroughGateway(t *testing.T) {
	se := startStreamEnv(t)
	gw := se.gw
	itemID := unique("watched")
	rdb := counterRedis(t, testenv.RedisAddr(t))
	t.Cleanup(func() { dropItemKeys(rdb, "article", itemID) })
	channel := "hgp:w:{article:" + itemID + "}"

	type received struct {
		likes int64
		at    time.Time
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clients := watchClients(gw)
	msgs := make([]chan received, len(clients))
	ended := make(chan error, len(clients))
	for i, wc := range clients {
		client := counterv1connect.NewCounterServiceClient(wc.hc, gw.url, wc.p.Opts...)
		stream, err := client.WatchCounts(ctx, connect.NewRequest(&counterv1.WatchCountsRequest{Items: []*counterv1.ItemRef{item(itemID)}}))
		if err != nil {
			t.Fatalf("%s: %v", wc.name, err)
		}
		msgs[i] = make(chan received, 64)
		go func() {
			defer stream.Close()
			for stream.Receive() {
				msgs[i] <- received{stream.Msg().GetCounts()[0].GetLikes(), time.Now()}
			}
			ended <- fmt.Errorf("%s: %w", wc.name, stream.Err())
		}()
	}
	next := func(i int, what string) received {
		t.Helper()
		select {
		case m := <-msgs[i]:
			return m
		case err := <-ended:
			t.Fatalf("%s: %s: stream ended: %v", clients[i].name, what, err)
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: %s: no message within 20s", clients[i].name, what)
		}
		return received{}
	}
	for i := range clients {
		if m := next(i, "first message"); m.likes != 0 {
			t.Fatalf("%s: first message has %d likes", clients[i].name, m.likes)
		}
	}

	// Outlive every unary limit: attempt timeout (1s), max timeout (2s),
	// read timeout (1s).
	select {
	case err := <-ended:
		t.Fatalf("a stream ended while idle: %v", err)
	case <-time.After(2500 * time.Millisecond):
	}

	for n := int64(1); n <= 3; n++ {
		// A new user each time: the count goes 1, 2, 3.
		like := counterv1connect.NewCounterServiceClient(gw.client, gw.url, withHeaders(bearer(token(t, fmt.Sprint("watch-liker-", n)))))
		liked := time.Now()
		res, err := like.Like(ctx, connect.NewRequest(&counterv1.LikeRequest{Item: item(itemID)}))
		if err != nil || res.Msg.GetCount() != n {
			t.Fatalf("like %d: %v %v", n, res, err)
		}
		for i := range clients {
			// Each like is seen while the stream is open: the message
			// was forwarded as it came, not when the stream ended.
			m := next(i, fmt.Sprintf("change to %d", n))
			if m.likes != n {
				t.Fatalf("%s: message with %d likes; want %d", clients[i].name, m.likes, n)
			}
			t.Logf("%s: change to %d after %v", clients[i].name, n, m.at.Sub(liked).Round(time.Millisecond))
		}
	}
	if n, err := rdb.PubSubNumSub(ctx, channel).Result(); err != nil || n[channel] < 1 {
		t.Fatalf("PUBSUB NUMSUB %s = %v, %v; want the counters subscribed", channel, n, err)
	}
	cancel()
	for range clients {
		select {
		case err := <-ended:
			if connect.CodeOf(err) != connect.CodeCanceled {
				t.Errorf("stream ended with %v; want canceled", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a stream did not end within 20s of its cancel")
		}
	}
	testenv.Eventually(t, 20*time.Second, "the cancels reached the counters (subscriptions released)", func() bool {
		n, err := rdb.PubSubNumSub(context.Background(), channel).Result()
		return err == nil && n[channel] == 0
	})
}

// TestAnalyticsThroughGateway: AnalyticsService is routed to the Consul
// "analytics" instance over every protocol, anonymously; WatchTopItems
// messages arrive one by one; a cancel reaches the backend; reflection
// lists the service.
func TestAnalyticsThroughGateway(t *testing.T) {
	se := startStreamEnv(t)
	gw := se.gw
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, wc := range watchClients(gw) {
		t.Run(strings.ReplaceAll(wc.name, "/", "_"), func(t *testing.T) {
			client := analyticsv1connect.NewAnalyticsServiceClient(wc.hc, gw.url, wc.p.Opts...)
			top, err := client.TopItems(ctx, connect.NewRequest(&analyticsv1.TopItemsRequest{Namespace: "article", Window: analyticsv1.Window_WINDOW_HOUR, Limit: 10}))
			if err != nil || len(top.Msg.GetItems()) != 2 || top.Msg.GetItems()[0].GetItemId() != "a1" {
				t.Fatalf("TopItems = %v, %v", top, err)
			}
			_, err = client.TopItems(ctx, connect.NewRequest(&analyticsv1.TopItemsRequest{Limit: 1000}))
			wantCode(t, err, connect.CodeInvalidArgument, "limit")
			stats, err := client.ApiStats(ctx, connect.NewRequest(&analyticsv1.ApiStatsRequest{Window: analyticsv1.StatsWindow_STATS_WINDOW_MINUTE}))
			if err != nil || len(stats.Msg.GetProcedures()) != 1 || stats.Msg.GetProcedures()[0].GetCalls() != 42 {
				t.Fatalf("ApiStats = %v, %v", stats, err)
			}

			sctx, scancel := context.WithCancel(ctx)
			defer scancel()
			stream, err := client.WatchTopItems(sctx, connect.NewRequest(&analyticsv1.WatchTopItemsRequest{Namespace: "article", Window: analyticsv1.Window_WINDOW_HOUR, Limit: 10}))
			if err != nil {
				t.Fatal(err)
			}
			got := make(chan int64, 8)
			go func() {
				defer close(got)
				for stream.Receive() {
					got <- stream.Msg().GetItems()[0].GetScore()
				}
			}()
			recvScore := func(want int64) {
				t.Helper()
				select {
				case s, ok := <-got:
					if !ok || s != want {
						t.Fatalf("message score %d (open %v); want %d: %v", s, ok, want, stream.Err())
					}
				case <-time.After(20 * time.Second):
					t.Fatalf("no ranking with score %d within 20s", want)
				}
			}
			recvScore(0)
			for _, s := range []int64{5, 9} {
				// The fake sends only when asked: each message must get
				// through while the stream stays open.
				select {
				case se.analytics.rankings <- s:
				case <-time.After(20 * time.Second):
					t.Fatal("the analytics stream is not waiting for a ranking")
				}
				recvScore(s)
			}
			scancel()
			select {
			case <-se.analytics.cancelled:
			case <-time.After(20 * time.Second):
				t.Fatal("the client's cancel did not reach the analytics backend")
			}
		})
	}

	rc := grpcreflect.NewClient(gw.client, gw.url, connect.WithGRPC())
	rs := rc.NewStream(ctx)
	defer rs.Close()
	names, err := rs.ListServices()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(names, protoreflect.FullName(analyticsv1connect.AnalyticsServiceName)) {
		t.Fatalf("reflection lists %v, missing %s", names, analyticsv1connect.AnalyticsServiceName)
	}
	fd, err := rs.FileContainingSymbol(analyticsv1connect.AnalyticsServiceName)
	if err != nil || len(fd) == 0 {
		t.Fatalf("reflection of %s: %v", analyticsv1connect.AnalyticsServiceName, err)
	}
}

// TestAnalyticsNotConfigured: with static routing and no
// HGP_GATEWAY_ANALYTICS_URLS, AnalyticsService answers Unimplemented naming
// the variable; through Consul without an analytics instance, Unavailable
// naming the service.
func TestAnalyticsNotConfigured(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, p := range rpctest.Protocols {
		client := analyticsv1connect.NewAnalyticsServiceClient(e.client, e.url, p.Opts...)
		_, err := client.TopItems(ctx, connect.NewRequest(&analyticsv1.TopItemsRequest{Limit: 10}))
		wantCode(t, err, connect.CodeUnimplemented, "HGP_GATEWAY_ANALYTICS_URLS")
		stream, err := client.WatchTopItems(ctx, connect.NewRequest(&analyticsv1.WatchTopItemsRequest{Limit: 10}))
		if err == nil {
			for stream.Receive() {
				t.Fatal("a ranking from an unconfigured backend")
			}
			err = stream.Err()
		}
		wantCode(t, err, connect.CodeUnimplemented, "HGP_GATEWAY_ANALYTICS_URLS")
	}
	if e.backend.hits.Load() != 0 {
		t.Fatal("an analytics call reached the counter backend")
	}

	gw := startGateway(t, map[string]string{
		"HGP_CONSUL_ADDR":        testenv.ConsulAddr(t),
		"HGP_GATEWAY_CONSUL_TAG": unique("noanalytics"),
		"HGP_RATE_ENABLED":       "false",
	})
	client := analyticsv1connect.NewAnalyticsServiceClient(gw.client, gw.url)
	_, err := client.ApiStats(ctx, connect.NewRequest(&analyticsv1.ApiStatsRequest{}))
	wantCode(t, err, connect.CodeUnavailable, "no healthy analytics instance")
}

// TestGRPCWebTextStreamFlushes: a grpc-web-text WatchCounts (what browsers
// without binary support send) delivers each message as base64 the moment
// it is forwarded.
func TestGRPCWebTextStreamFlushes(t *testing.T) {
	se := startStreamEnv(t)
	gw := se.gw
	itemID := unique("webtext")
	rdb := counterRedis(t, testenv.RedisAddr(t))
	t.Cleanup(func() { dropItemKeys(rdb, "article", itemID) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	body, err := proto.Marshal(&counterv1.WatchCountsRequest{Items: []*counterv1.ItemRef{item(itemID)}})
	if err != nil {
		t.Fatal(err)
	}
	frame := append([]byte{0, 0, 0, 0, 0}, body...)
	binary.BigEndian.PutUint32(frame[1:5], uint32(len(body)))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, gw.url+counterv1connect.CounterServiceWatchCountsProcedure,
		strings.NewReader(base64.StdEncoding.EncodeToString(frame)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc-web-text+proto")
	resp, err := gw.http1.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/grpc-web-text") {
		t.Fatalf("content type %q", ct)
	}
	likes := make(chan int64, 8)
	go func() {
		defer close(likes)
		var text, bin []byte
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			text = append(text, buf[:n]...)
			// Every flush ends on a whole base64 quantum: decode them.
			for len(text) >= 4 {
				dec, derr := base64.StdEncoding.DecodeString(string(text[:4]))
				if derr != nil {
					return
				}
				bin = append(bin, dec...)
				text = text[4:]
			}
			for len(bin) >= 5 {
				size := int(binary.BigEndian.Uint32(bin[1:5]))
				if len(bin) < 5+size {
					break
				}
				if bin[0] == 0 {
					var m counterv1.WatchCountsResponse
					if proto.Unmarshal(bin[5:5+size], &m) == nil && len(m.GetCounts()) == 1 {
						likes <- m.GetCounts()[0].GetLikes()
					}
				}
				bin = bin[5+size:]
			}
			if err != nil {
				return
			}
		}
	}()
	wantLikes := func(want int64) {
		t.Helper()
		select {
		case n, ok := <-likes:
			if !ok || n != want {
				t.Fatalf("message with %d likes (open %v); want %d", n, ok, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("no message with %d likes within 20s", want)
		}
	}
	wantLikes(0)
	client := counterv1connect.NewCounterServiceClient(gw.client, gw.url, withHeaders(bearer(token(t, "webtext-liker"))))
	if _, err := client.Like(ctx, connect.NewRequest(&counterv1.LikeRequest{Item: item(itemID)})); err != nil {
		t.Fatal(err)
	}
	wantLikes(1)
}
