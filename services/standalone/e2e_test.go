package main

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"
	"github.com/redis/go-redis/v9"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/bootstrap"
	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/consumer"
	"github.com/highgopress/highgopress/services/counter"
	"github.com/highgopress/highgopress/services/gateway"
	"github.com/highgopress/highgopress/services/gateway/auth"
)

const e2eRedisDB = "11"

// startMultiService runs a counter on real Redis and a gateway in front of
// it, as separate components on loopback ports, and returns the gateway URL
// and a function minting tokens. extra adds settings (and, with
// HGP_KAFKA_BROKERS and HGP_MYSQL_DSN among them, a consumer).
func startMultiService(t *testing.T, extra map[string]string) (string, func(sub string) string) {
	t.Helper()
	redisAddr := testenv.RedisAddr(t)
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr, DB: 11})
	if err := rdb.FlushDB(context.Background()).Err(); err != nil {
		t.Fatalf("flush redis: %v", err)
	}
	t.Cleanup(func() { rdb.Close() })

	counterLn, err := server.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gatewayLn, err := server.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	jwtSecret := strings.Repeat("j", 32)
	vars := map[string]string{
		"HGP_REDIS_ADDR":           redisAddr,
		"HGP_REDIS_DB":             e2eRedisDB,
		"HGP_IDENTITY_SECRET":      strings.Repeat("i", 32),
		"HGP_JWT_HS256_SECRET":     jwtSecret,
		"HGP_GATEWAY_COUNTER_URLS": "http://" + counterLn.Addr().String(),
		"HGP_COUNTER_CACHE_TTL":    "0s",
	}
	maps.Copy(vars, extra)
	cfg := config.FromMap(vars)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // after the components stopped (cleanups run last-first)
	logger := logging.Discard()
	cc, err := counter.Build(ctx, logger, cfg)
	if err != nil {
		t.Fatalf("counter: %v", err)
	}
	cc.Listener = counterLn
	gc, err := gateway.Build(ctx, logger, cfg)
	if err != nil {
		t.Fatalf("gateway: %v", err)
	}
	gc.Listener = gatewayLn
	comps := []*bootstrap.Component{cc, gc}
	if vars["HGP_KAFKA_BROKERS"] != "" && vars["HGP_MYSQL_DSN"] != "" {
		kc, err := consumer.Build(ctx, logger, cfg)
		if err != nil {
			t.Fatalf("consumer: %v", err)
		}
		comps = append(comps, kc)
	}
	if err := cfg.Err(); err != nil {
		t.Fatal(err)
	}
	testenv.Background(t, func(ctx context.Context) error { return bootstrap.Run(ctx, logger, comps...) })
	mint := func(sub string) string {
		tok, err := auth.Issue([]byte(jwtSecret), sub, time.Hour, gateway.DefaultIssuer, gateway.DefaultAudience)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	return "http://" + gatewayLn.Addr().String(), mint
}

func withToken[T any](msg *T, token string) *connect.Request[T] {
	req := connect.NewRequest(msg)
	if token != "" {
		req.Header().Set("Authorization", "Bearer "+token)
	}
	return req
}

// TestEndToEndEveryRPCEveryProtocol drives every RPC through the gateway to
// the counter on real Redis over Connect JSON, gRPC and gRPC-Web.
func TestEndToEndEveryRPCEveryProtocol(t *testing.T) {
	url, mint := startMultiService(t, nil)
	client := server.NewH2CClient()
	ctx := context.Background()

	for _, p := range rpctest.Protocols {
		t.Run(p.Name, func(t *testing.T) {
			counters := counterv1connect.NewCounterServiceClient(client, url, p.Opts...)
			follows := counterv1connect.NewFollowServiceClient(client, url, p.Opts...)
			alice, bob := "alice-"+p.Name, "bob-"+p.Name
			item := &counterv1.ItemRef{Namespace: "article", Id: "e2e-" + p.Name}

			for i, want := range []struct {
				changed bool
				count   int64
			}{{true, 1}, {false, 1}} {
				res, err := counters.Like(ctx, withToken(&counterv1.LikeRequest{Item: item}, mint(alice)))
				if err != nil || res.Msg.Changed != want.changed || res.Msg.Count != want.count {
					t.Fatalf("like #%d: %v %v", i, res, err)
				}
			}
			if res, err := counters.Like(ctx, withToken(&counterv1.LikeRequest{Item: item}, mint(bob))); err != nil || res.Msg.Count != 2 {
				t.Fatalf("bob like: %v %v", res, err)
			}
			if res, err := counters.Unlike(ctx, withToken(&counterv1.UnlikeRequest{Item: item}, mint(bob))); err != nil || !res.Msg.Changed || res.Msg.Count != 1 {
				t.Fatalf("bob unlike: %v %v", res, err)
			}
			_, err := counters.Like(ctx, withToken(&counterv1.LikeRequest{Item: item}, ""))
			if connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("anonymous like: %v", err)
			}

			for i := 0; i < 3; i++ {
				res, err := counters.Increment(ctx, withToken(&counterv1.IncrementRequest{
					Item: item, Metric: "views", Delta: 5, IdempotencyKey: "view-key-" + p.Name,
				}, mint(alice)))
				if err != nil || res.Msg.Value != 5 {
					t.Fatalf("increment #%d: %v %v", i, res, err)
				}
			}

			got, err := counters.GetCounts(ctx, withToken(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item}}, mint(alice)))
			if err != nil || len(got.Msg.Counts) != 1 {
				t.Fatalf("GetCounts: %v %v", got, err)
			}
			c := got.Msg.Counts[0]
			if c.Likes != 1 || !c.ViewerLiked || c.Metrics["views"] != 5 {
				t.Fatalf("GetCounts = %v", c)
			}
			anon, err := counters.GetCounts(ctx, withToken(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item}}, ""))
			if err != nil || anon.Msg.Counts[0].ViewerLiked || anon.Msg.Counts[0].Likes != 1 {
				t.Fatalf("anonymous GetCounts: %v %v", anon, err)
			}

			fr, err := follows.Follow(ctx, withToken(&counterv1.FollowRequest{UserId: bob}, mint(alice)))
			if err != nil || !fr.Msg.Changed || fr.Msg.Following != 1 || fr.Msg.Followers != 1 {
				t.Fatalf("follow: %v %v", fr, err)
			}
			if _, err := follows.Follow(ctx, withToken(&counterv1.FollowRequest{UserId: alice}, mint(alice))); connect.CodeOf(err) != connect.CodeInvalidArgument {
				t.Fatalf("self-follow: %v", err)
			}
			st, err := follows.GetUserStats(ctx, withToken(&counterv1.GetUserStatsRequest{UserIds: []string{alice, bob}}, mint(alice)))
			if err != nil || len(st.Msg.Stats) != 2 {
				t.Fatalf("GetUserStats: %v %v", st, err)
			}
			if a, b := st.Msg.Stats[0], st.Msg.Stats[1]; a.Following != 1 || a.Followers != 0 || b.Followers != 1 || !b.ViewerFollows {
				t.Fatalf("stats alice=%v bob=%v", a, b)
			}
			uf, err := follows.Unfollow(ctx, withToken(&counterv1.UnfollowRequest{UserId: bob}, mint(alice)))
			if err != nil || !uf.Msg.Changed || uf.Msg.Following != 0 || uf.Msg.Followers != 0 {
				t.Fatalf("unfollow: %v %v", uf, err)
			}
		})
	}
}

// TestEndToEndReflectionAndGet checks grpcurl-style reflection at the gateway
// and a Connect GET of a side-effect-free procedure.
func TestEndToEndReflectionAndGet(t *testing.T) {
	url, _ := startMultiService(t, nil)
	client := server.NewH2CClient()
	rc := grpcreflect.NewClient(client, url)
	stream := rc.NewStream(context.Background())
	defer stream.Close()
	names, err := stream.ListServices()
	if err != nil {
		t.Fatalf("ListServices: %v", err)
	}
	var got []string
	for _, n := range names {
		got = append(got, string(n))
	}
	for _, want := range []string{counterv1connect.CounterServiceName, counterv1connect.FollowServiceName} {
		if !slices.Contains(got, want) {
			t.Fatalf("reflection lists %v, missing %s", got, want)
		}
	}

	counters := counterv1connect.NewCounterServiceClient(http.DefaultClient, url, connect.WithHTTPGet(), connect.WithProtoJSON())
	res, err := counters.GetCounts(context.Background(), connect.NewRequest(&counterv1.GetCountsRequest{
		Items: []*counterv1.ItemRef{{Namespace: "article", Id: "never-liked"}},
	}))
	if err != nil || len(res.Msg.Counts) != 1 || res.Msg.Counts[0].Likes != 0 {
		t.Fatalf("GET GetCounts: %v %v", res, err)
	}
}
