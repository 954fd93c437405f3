package observability

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/platform/testenv/pipetest"
)

const (
	identitySecret = "observability-identity-secret-0123456789"
	jwtSecret      = "observability-jwt-secret-0123456789abcdef"
)

// stack is a gateway, a counter (relay and reconciliation on), a
// consumer and analytics as processes on the shared Redis (DB 7), Kafka (this run's
// topics and group) and MariaDB (this run's database).
type stack struct {
	gateway, counter, consumer, analytics *proc
	// metrics are the scrape addresses by job.
	metrics map[string]string
	env     *pipetest.Env
	hc      *http.Client
}

// stackOption changes how startStack starts the services.
type stackOption func(*stackOptions)

type stackOptions struct{ deadCounter bool }

// withDeadCounter lists, after the live counter, a counter URL nobody
// listens on in the gateway's static instances: calls picked for it fail to
// connect and are retried on the live one (upstream retries, ejections).
func withDeadCounter() stackOption { return func(o *stackOptions) { o.deadCounter = true } }

// startStack starts the three services; otel is added to every service's
// environment (tracing configuration).
func startStack(t *testing.T, otel map[string]string, opts ...stackOption) *stack {
	t.Helper()
	redisAddr := testenv.RedisAddr(t)
	brokers := testenv.KafkaBrokers(t)
	dsn := testenv.MySQLDSN(t)
	env := pipetest.NewEnv(t, strings.Split(brokers, ","), dsn, 2)
	s := &stack{env: env, metrics: map[string]string{}, hc: server.NewH2CClient()}
	t.Cleanup(s.hc.CloseIdleConnections)
	with := func(m map[string]string) map[string]string {
		for k, v := range otel {
			m[k] = v
		}
		return m
	}
	counterAddr, counterMetrics := freeAddr(t), freeAddr(t)
	s.counter = start(t, "counter", counterAddr, with(map[string]string{
		"HGP_IDENTITY_SECRET": identitySecret, "HGP_REDIS_ADDR": redisAddr, "HGP_REDIS_DB": fmt.Sprint(redisDB),
		"HGP_COUNTER_ADDR": counterAddr, "HGP_KAFKA_BROKERS": brokers, "HGP_KAFKA_TOPIC": env.Topic,
		"HGP_MYSQL_DSN": env.DSN, "HGP_RECONCILE_INTERVAL": "2s", "HGP_METRICS_ADDR": counterMetrics,
	}))
	s.metrics["counter"] = counterMetrics
	consumerAddr := freeAddr(t)
	s.consumer = start(t, "consumer", consumerAddr, with(map[string]string{
		"HGP_CONSUMER_ADDR": consumerAddr, "HGP_KAFKA_BROKERS": brokers, "HGP_KAFKA_TOPIC": env.Topic,
		"HGP_KAFKA_DLQ_TOPIC": env.DLQ, "HGP_KAFKA_GROUP": env.Group, "HGP_MYSQL_DSN": env.DSN,
	}))
	s.metrics["consumer"] = consumerAddr
	analyticsAddr := freeAddr(t)
	s.analytics = start(t, "analytics", analyticsAddr, with(map[string]string{
		"HGP_ANALYTICS_ADDR": analyticsAddr, "HGP_REDIS_ADDR": redisAddr, "HGP_REDIS_DB": fmt.Sprint(redisDB),
		"HGP_ANALYTICS_KEY_PREFIX": "obs-" + suffix() + ":", "HGP_KAFKA_BROKERS": brokers, "HGP_KAFKA_TOPIC": env.Topic,
		"HGP_KAFKA_DLQ_TOPIC": env.DLQ, "HGP_ANALYTICS_GROUP": env.Group + "-analytics",
	}))
	s.metrics["analytics"] = analyticsAddr
	var o stackOptions
	for _, opt := range opts {
		opt(&o)
	}
	counterURLs := "http://" + counterAddr
	if o.deadCounter {
		counterURLs += ",http://" + freeAddr(t)
	}
	gatewayAddr, gatewayMetrics := freeAddr(t), freeAddr(t)
	s.gateway = start(t, "gateway", gatewayAddr, with(map[string]string{
		"HGP_IDENTITY_SECRET": identitySecret, "HGP_JWT_HS256_SECRET": jwtSecret,
		"HGP_GATEWAY_ADDR": gatewayAddr, "HGP_GATEWAY_COUNTER_URLS": counterURLs,
		"HGP_REDIS_ADDR": redisAddr, "HGP_REDIS_DB": fmt.Sprint(redisDB),
		"HGP_RATE_KEY_PREFIX": "obs-" + suffix() + ":", "HGP_RATE_WRITE_USER": "20-S",
		"HGP_METRICS_ADDR": gatewayMetrics,
	}))
	s.metrics["gateway"] = gatewayMetrics
	return s
}

func suffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

var tokens sync.Map

// token mints a token for user with the devtoken command.
func token(t testing.TB, user string) string {
	t.Helper()
	if v, ok := tokens.Load(user); ok {
		return v.(string)
	}
	out, err := exec.Command(binary(t, "devtoken"), "-secret", jwtSecret, "-sub", user).Output()
	if err != nil {
		t.Fatalf("devtoken: %v", err)
	}
	tok := strings.TrimSpace(string(out))
	tokens.Store(user, tok)
	return tok
}

// client is a counter client through the gateway over one protocol.
func (s *stack) client(opts ...connect.ClientOption) counterv1connect.CounterServiceClient {
	return counterv1connect.NewCounterServiceClient(s.hc, "http://"+s.gateway.addr, opts...)
}

func (s *stack) follow(opts ...connect.ClientOption) counterv1connect.FollowServiceClient {
	return counterv1connect.NewFollowServiceClient(s.hc, "http://"+s.gateway.addr, opts...)
}

func as[T any](t testing.TB, user string, msg *T) *connect.Request[T] {
	req := connect.NewRequest(msg)
	if user != "" {
		req.Header().Set("Authorization", "Bearer "+token(t, user))
	}
	return req
}

// drive sends a bounded, mixed load through the gateway over Connect,
// gRPC and gRPC-Web: likes (changed and repeated), unlikes, follows,
// increments, reads, bad requests, unauthenticated calls and one user
// over its write budget. It returns how many calls answered OK.
func (s *stack) drive(t *testing.T, rounds int) int {
	t.Helper()
	ctx := context.Background()
	ok := 0
	count := func(err error) {
		if err == nil {
			ok++
		}
	}
	protos := [][]connect.ClientOption{{connect.WithProtoJSON()}, {connect.WithGRPC()}, {connect.WithGRPCWeb()}}
	for r := 0; r < rounds; r++ {
		opts := protos[r%len(protos)]
		c, f := s.client(opts...), s.follow(opts...)
		for u := 0; u < 6; u++ {
			user := fmt.Sprintf("obs-user-%d", u)
			item := &counterv1.ItemRef{Namespace: "obs", Id: fmt.Sprintf("item-%d", (r+u)%5)}
			_, err := c.Like(ctx, as(t, user, &counterv1.LikeRequest{Item: item}))
			count(err)
			_, err = c.Like(ctx, as(t, user, &counterv1.LikeRequest{Item: item})) // unchanged
			count(err)
			if r%2 == 1 {
				_, err = c.Unlike(ctx, as(t, user, &counterv1.UnlikeRequest{Item: item}))
				count(err)
			}
			_, err = f.Follow(ctx, as(t, user, &counterv1.FollowRequest{UserId: fmt.Sprintf("obs-user-%d", (u+1)%6)}))
			count(err)
			_, err = c.GetCounts(ctx, as(t, user, &counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item}}))
			count(err)
		}
		_, err := c.Increment(ctx, as(t, "obs-user-0", &counterv1.IncrementRequest{
			Item: &counterv1.ItemRef{Namespace: "obs", Id: "views"}, Metric: "views", Delta: 1, IdempotencyKey: suffix()}))
		count(err)
		// bad input, no credentials
		_, _ = c.Like(ctx, as(t, "obs-user-0", &counterv1.LikeRequest{}))
		_, _ = c.Like(ctx, as(t, "", &counterv1.LikeRequest{Item: &counterv1.ItemRef{Namespace: "obs", Id: "x"}}))
	}
	// one user far over its write budget (20/s): rejected with resource_exhausted
	c := s.client()
	for i := 0; i < 40; i++ {
		_, _ = c.Like(ctx, as(t, "obs-hot", &counterv1.LikeRequest{Item: &counterv1.ItemRef{Namespace: "obs", Id: fmt.Sprint("hot-", i)}}))
	}
	return ok
}

// watch opens a WatchCounts stream through the gateway, waits for its first
// message and keeps reading it until the test ends.
func (s *stack) watch(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := s.client().WatchCounts(ctx, connect.NewRequest(&counterv1.WatchCountsRequest{
		Items: []*counterv1.ItemRef{{Namespace: "obs", Id: "item-0"}}}))
	if err != nil {
		cancel()
		t.Fatalf("WatchCounts through the gateway: %v", err)
	}
	if !stream.Receive() {
		cancel()
		t.Fatalf("WatchCounts through the gateway: no first message: %v", stream.Err())
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for stream.Receive() {
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = stream.Close()
	})
}
