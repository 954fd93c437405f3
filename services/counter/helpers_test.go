package counter_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/redis/go-redis/v9"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/identity"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/counter"
	"github.com/highgopress/highgopress/services/counter/outbox"
)

// testDB is the Redis database this package's tests and benchmarks own; each
// test flushes it first, and tests of this package run one at a time.
const testDB = 13

var secret = strings.Repeat("s", identity.MinSecretLen)

// env is one counter service on loopback over real Redis.
type env struct {
	rdb    *redis.Client
	c      *counter.Counter
	url    string
	http   *http.Client
	signer *identity.Signer
}

func newSigner(t testing.TB) *identity.Signer {
	t.Helper()
	s, err := identity.NewSigner([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// realRedis returns a client of the test database, flushed.
func realRedis(t testing.TB) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t), DB: testDB, PoolSize: 64, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.FlushDB(context.Background()).Err(); err != nil {
		t.Fatalf("FLUSHDB: %v", err)
	}
	return rdb
}

func newEnv(t testing.TB, opts ...counter.Option) *env {
	t.Helper()
	rdb := realRedis(t)
	signer := newSigner(t)
	c, err := counter.New(logging.Discard(), rdb, signer, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	url, client := rpctest.Serve(t, c.Handler())
	return &env{rdb: rdb, c: c, url: url, http: client, signer: signer}
}

// counters returns a CounterService client over p, with extra options.
func (e *env) counters(p rpctest.Protocol, opts ...connect.ClientOption) counterv1connect.CounterServiceClient {
	return counterv1connect.NewCounterServiceClient(e.http, e.url, append(slices.Clone(p.Opts), append(opts, e.signAs())...)...)
}

func (e *env) follows(p rpctest.Protocol) counterv1connect.FollowServiceClient {
	return counterv1connect.NewFollowServiceClient(e.http, e.url, append(slices.Clone(p.Opts), e.signAs())...)
}

// testActorHeader carries the user a test request acts as until signAs
// replaces it with the identity header signed for the called procedure.
const testActorHeader = "X-Test-Actor"

// signAs is what the gateway does for each call: sign the acting user for
// exactly the procedure being called.
func (e *env) signAs() connect.ClientOption {
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if user := req.Header().Get(testActorHeader); user != "" {
				req.Header().Del(testActorHeader)
				req.Header().Set(identity.Header, e.signer.Sign(user, req.Spec().Procedure))
			}
			return next(ctx, req)
		}
	}))
}

// as wraps msg in a request acting as user ("" sends no identity header).
func as[T any](e *env, user string, msg *T) *connect.Request[T] {
	req := connect.NewRequest(msg)
	if user != "" {
		req.Header().Set(testActorHeader, user)
	}
	return req
}

func ref(ns, id string) *counterv1.ItemRef { return &counterv1.ItemRef{Namespace: ns, Id: id} }

// outboxLen returns the number of outbox entries.
func (e *env) outboxLen(t testing.TB) int64 {
	t.Helper()
	n, err := e.rdb.XLen(context.Background(), outbox.Stream).Result()
	if err != nil {
		t.Fatalf("XLEN: %v", err)
	}
	return n
}

// lastOutbox returns the fields of the newest outbox entry.
func (e *env) lastOutbox(t testing.TB) map[string]any {
	t.Helper()
	msgs, err := e.rdb.XRevRangeN(context.Background(), outbox.Stream, "+", "-", 1).Result()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("XREVRANGE: %v, %d entries", err, len(msgs))
	}
	return msgs[0].Values
}

// keys returns every key of the test database.
func (e *env) keys(t testing.TB) []string {
	t.Helper()
	k, err := e.rdb.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatalf("KEYS: %v", err)
	}
	return k
}

func wantCode(t testing.TB, what string, err error, code connect.Code, msg string) {
	t.Helper()
	if connect.CodeOf(err) != code {
		t.Fatalf("%s: code %v (%v); want %v", what, connect.CodeOf(err), err, code)
	}
	if msg != "" && !strings.Contains(err.Error(), msg) {
		t.Fatalf("%s: message %q does not contain %q", what, err.Error(), msg)
	}
}

// waitTimeout bounds every wait in these tests, so a hang fails the test
// that caused it.
const waitTimeout = 60 * time.Second

// waitGroup waits for wg or fails the test at the deadline.
func waitGroup(t testing.TB, wg *sync.WaitGroup, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	recv(t, done, what)
}

// recv receives from ch or fails the test at the deadline.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// releaser returns a channel to block on and a function closing it once;
// it is closed when the test ends at the latest (before earlier cleanups
// such as closing the service, which waits for blocked work).
func releaser(t testing.TB) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(ch) }) }
	t.Cleanup(release)
	return ch, release
}

// configFor is the configuration of a counter on the test database of the
// real Redis, listening on any loopback port, with kv overriding it.
func configFor(t testing.TB, kv ...string) *config.Reader {
	t.Helper()
	m := map[string]string{
		"HGP_IDENTITY_SECRET": secret,
		"HGP_REDIS_ADDR":      testenv.RedisAddr(t),
		"HGP_REDIS_DB":        fmt.Sprint(testDB),
		"HGP_COUNTER_ADDR":    "127.0.0.1:0",
	}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return config.FromMap(m)
}
