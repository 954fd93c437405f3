package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/redis/go-redis/v9"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/testenv"
)

// testPrefix gives each test its own Redis keys and deletes them afterwards.
func testPrefix(t *testing.T, rdb *redis.Client) string {
	t.Helper()
	p := fmt.Sprintf("hgp:rltest:%d:%d", time.Now().UnixNano(), rand.IntN(1e9))
	t.Cleanup(func() {
		ctx := context.Background()
		for key := range rdb.Scan(ctx, 0, p+":*", 100).Iterator().Vals(ctx) {
			rdb.Del(ctx, key)
		}
	})
	return p
}

func realRedis(t *testing.T) *redis.Client {
	t.Helper()
	addr := testenv.RedisAddr(t)
	rdb := NewRedisClient(addr, "", 0)
	t.Cleanup(func() { rdb.Close() })
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redis at %s: %v", addr, err)
	}
	return rdb
}

func cfgWith(f func(*Config)) Config {
	c := Config{WriteUser: "off", ReadUser: "off", WriteIP: "off", ReadIP: "off", RedisDown: FailOpen, RedisTimeout: 30 * time.Second}
	f(&c)
	return c
}

func newLimiter(t *testing.T, rdb redis.UniversalClient, cfg Config, opts ...Option) *Limiter {
	t.Helper()
	l, err := New(logging.Discard(), rdb, cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })

// do sends one request through h as if from remote, returning the recorder.
func do(h http.Handler, remote, path string, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader("{}"))
	r.RemoteAddr = remote
	r.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

const likePath = "/highgopress.counter.v1.CounterService/Like"
const getPath = "/highgopress.counter.v1.CounterService/GetCounts"

// TestTwoReplicasShareOneBudget: two gateway replicas (two Limiters, two
// Redis clients) enforce one budget: the total allowed across both stays
// within the limit.
func TestTwoReplicasShareOneBudget(t *testing.T) {
	rdb1, rdb2 := realRedis(t), realRedis(t)
	prefix := testPrefix(t, rdb1)
	cfg := cfgWith(func(c *Config) { c.WriteIP = "25-H" })
	replicas := []http.Handler{
		newLimiter(t, rdb1, cfg, WithKeyPrefix(prefix)).Middleware(okHandler),
		newLimiter(t, rdb2, cfg, WithKeyPrefix(prefix)).Middleware(okHandler),
	}
	var allowed, rejected atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				w := do(replicas[(g+i)%2], "198.51.100.1:4000", likePath, nil)
				switch w.Code {
				case http.StatusOK:
					allowed.Add(1)
				case http.StatusTooManyRequests:
					rejected.Add(1)
				default:
					t.Errorf("status %d", w.Code)
				}
			}
		})
	}
	wg.Wait()
	if allowed.Load() != 25 || rejected.Load() != 160-25 {
		t.Fatalf("allowed %d rejected %d across two replicas, want 25/%d", allowed.Load(), rejected.Load(), 160-25)
	}
}

// TestConcurrentBudgetsInSharedPipelines: the takes of many clients at once
// share Redis pipelines; every client still gets exactly its own budget
// (a reply given to the wrong caller would show as a miscount).
func TestConcurrentBudgetsInSharedPipelines(t *testing.T) {
	rdb := realRedis(t)
	prefix := testPrefix(t, rdb)
	h := newLimiter(t, rdb, cfgWith(func(c *Config) { c.WriteIP = "7-H" }), WithKeyPrefix(prefix)).Middleware(okHandler)
	const clients, each = 24, 12
	var allowed [clients]atomic.Int64
	var wg sync.WaitGroup
	for c := range clients {
		for range 2 {
			wg.Go(func() {
				for range each / 2 {
					switch w := do(h, fmt.Sprintf("198.51.100.%d:4000", c+1), likePath, nil); w.Code {
					case http.StatusOK:
						allowed[c].Add(1)
					case http.StatusTooManyRequests:
					default:
						t.Errorf("status %d", w.Code)
					}
				}
			})
		}
	}
	wg.Wait()
	for c := range clients {
		if n := allowed[c].Load(); n != 7 {
			t.Errorf("client %d: %d allowed of %d; want 7", c, n, each)
		}
	}
}

func TestForgedForwardingHeadersDoNotSelectAnotherBudget(t *testing.T) {
	rdb := realRedis(t)
	cfg := cfgWith(func(c *Config) { c.WriteIP = "5-H" })
	h := newLimiter(t, rdb, cfg, WithKeyPrefix(testPrefix(t, rdb))).Middleware(okHandler)
	allowed := 0
	for i := range 30 {
		w := do(h, "198.51.100.2:4000", likePath, map[string]string{
			"X-Forwarded-For": fmt.Sprintf("10.0.%d.%d", i/250, i%250+1),
			"X-Real-IP":       fmt.Sprintf("172.16.0.%d", i+1),
		})
		if w.Code == http.StatusOK {
			allowed++
		}
	}
	if allowed != 5 {
		t.Fatalf("allowed %d with rotating forged headers, want 5 (one budget: the socket peer's)", allowed)
	}
}

func TestTrustedProxyForwardedForIsHonoured(t *testing.T) {
	rdb := realRedis(t)
	trusted, _ := ParseTrustedProxies([]string{"10.0.0.0/8"})
	cfg := cfgWith(func(c *Config) { c.WriteIP = "3-H"; c.TrustedProxies = trusted })
	h := newLimiter(t, rdb, cfg, WithKeyPrefix(testPrefix(t, rdb))).Middleware(okHandler)
	count := func(xff string) int {
		n := 0
		for range 10 {
			if do(h, "10.0.0.1:80", likePath, map[string]string{"X-Forwarded-For": xff}).Code == http.StatusOK {
				n++
			}
		}
		return n
	}
	if got := count("198.51.100.3"); got != 3 {
		t.Fatalf("client A behind proxy: allowed %d, want 3", got)
	}
	if got := count("198.51.100.4"); got != 3 {
		t.Fatalf("client B behind proxy has its own budget: allowed %d, want 3", got)
	}
	// Client A prepends a forged address: the proxy appended the real one,
	// which is what counts — A's budget is spent.
	if got := count("203.0.113.99, 198.51.100.3"); got != 0 {
		t.Fatalf("client A with forged XFF prefix: allowed %d, want 0", got)
	}
}

func TestUserBudgetsAndClasses(t *testing.T) {
	rdb := realRedis(t)
	cfg := cfgWith(func(c *Config) { c.WriteUser = "2-H"; c.ReadUser = "4-H"; c.WriteIP = "100-H" })
	subject := func(r *http.Request) string { return r.Header.Get("Test-User") }
	h := newLimiter(t, rdb, cfg, WithKeyPrefix(testPrefix(t, rdb)), WithSubject(subject)).Middleware(okHandler)
	run := func(user, path string, n int) (ok int, last *httptest.ResponseRecorder) {
		for range n {
			last = do(h, "198.51.100.5:1", path, map[string]string{"Test-User": user})
			if last.Code == http.StatusOK {
				ok++
			}
		}
		return ok, last
	}
	if ok, _ := run("alice", likePath, 5); ok != 2 {
		t.Fatalf("alice writes allowed %d, want 2", ok)
	}
	if ok, _ := run("alice", getPath, 6); ok != 4 {
		t.Fatalf("alice reads (separate class) allowed %d, want 4", ok)
	}
	ok, last := run("bob", likePath, 1)
	if ok != 1 {
		t.Fatal("bob's budget was spent by alice")
	}
	if last.Header().Get(HeaderRemaining) != "1" || last.Header().Get(HeaderLimit) != "2" {
		t.Fatalf("allowed response headers %v", last.Header())
	}
	// Anonymous reads are limited by IP only (read IP class is off here).
	if ok, _ := run("", getPath, 10); ok != 10 {
		t.Fatalf("anonymous reads allowed %d, want 10", ok)
	}
}

func TestRejectionHeadersAndBody(t *testing.T) {
	rdb := realRedis(t)
	cfg := cfgWith(func(c *Config) { c.WriteIP = "1-M" })
	lim := newLimiter(t, rdb, cfg, WithKeyPrefix(testPrefix(t, rdb)))
	h := lim.Middleware(okHandler)
	first := do(h, "198.51.100.6:1", likePath, nil)
	if first.Code != http.StatusOK || first.Header().Get(HeaderRemaining) != "0" {
		t.Fatalf("first: %d %v", first.Code, first.Header())
	}
	w := do(h, "198.51.100.6:1", likePath, nil)
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429", w.Code)
	}
	body, _ := io.ReadAll(w.Body)
	if !strings.Contains(string(body), `"code":"resource_exhausted"`) {
		t.Fatalf("body %s", body)
	}
	ra, err := strconv.Atoi(w.Header().Get(HeaderRetryAfter))
	if err != nil || ra < 1 || ra > 60 {
		t.Fatalf("Retry-After %q", w.Header().Get(HeaderRetryAfter))
	}
	if w.Header().Get(HeaderLimit) != "1" || w.Header().Get(HeaderRemaining) != "0" || w.Header().Get(HeaderReset) == "" {
		t.Fatalf("headers %v", w.Header())
	}
	// Further rejections come from the local cache of exhausted budgets,
	// with the same headers.
	for range 3 {
		w := do(h, "198.51.100.6:1", likePath, nil)
		if w.Code != http.StatusTooManyRequests || w.Header().Get(HeaderRetryAfter) == "" || w.Header().Get(HeaderLimit) != "1" {
			t.Fatalf("cached rejection: %d %v", w.Code, w.Header())
		}
	}
	if st := lim.Stats(); st.CachedRejections != 3 || st.Rejected != 4 || st.Allowed != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestHealthAndReflectionAreExempt(t *testing.T) {
	cfg := cfgWith(func(c *Config) { c.WriteIP = "1-H"; c.ReadIP = "1-H" })
	h := newLimiter(t, nil, cfg).Middleware(okHandler)
	for range 5 {
		if w := do(h, "198.51.100.7:1", "/grpc.health.v1.Health/Check", nil); w.Code != http.StatusOK {
			t.Fatalf("health check limited: %d", w.Code)
		}
	}
}

type stubCounter struct {
	counterv1connect.UnimplementedCounterServiceHandler
}

func (stubCounter) Like(context.Context, *connect.Request[counterv1.LikeRequest]) (*connect.Response[counterv1.LikeResponse], error) {
	return connect.NewResponse(&counterv1.LikeResponse{}), nil
}

// TestAllProtocolsGetResourceExhausted: a real Connect handler behind the
// middleware, called over Connect, gRPC and gRPC-Web.
func TestAllProtocolsGetResourceExhausted(t *testing.T) {
	rdb := realRedis(t)
	for _, p := range rpctest.Protocols {
		t.Run(p.Name, func(t *testing.T) {
			cfg := cfgWith(func(c *Config) { c.WriteIP = "2-H" })
			lim := newLimiter(t, rdb, cfg, WithKeyPrefix(testPrefix(t, rdb)))
			mux := http.NewServeMux()
			mux.Handle(counterv1connect.NewCounterServiceHandler(stubCounter{}))
			url, hc := rpctest.Serve(t, lim.Middleware(mux))
			client := counterv1connect.NewCounterServiceClient(hc, url, p.Opts...)
			req := &counterv1.LikeRequest{Item: &counterv1.ItemRef{Namespace: "article", Id: "1"}}
			for i := range 2 {
				res, err := client.Like(context.Background(), connect.NewRequest(req))
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				if got := res.Header().Get(HeaderRemaining); got != strconv.Itoa(1-i) {
					t.Fatalf("call %d: RateLimit-Remaining %q", i, got)
				}
			}
			_, err := client.Like(context.Background(), connect.NewRequest(req))
			var cerr *connect.Error
			if !errors.As(err, &cerr) || cerr.Code() != connect.CodeResourceExhausted {
				t.Fatalf("third call: %v, want ResourceExhausted", err)
			}
			if !strings.Contains(cerr.Message(), "rate limit exceeded") {
				t.Fatalf("message %q", cerr.Message())
			}
			if cerr.Meta().Get(HeaderRetryAfter) == "" || cerr.Meta().Get(HeaderLimit) != "2" {
				t.Fatalf("error metadata %v", cerr.Meta())
			}
		})
	}
}

func TestRedisUnreachableFailOpenUsesLocalLimiter(t *testing.T) {
	rdb := NewRedisClient(testenv.ClosedAddr(t), "", 0)
	t.Cleanup(func() { rdb.Close() })
	cfg := cfgWith(func(c *Config) { c.WriteIP = "4-H" })
	lim := newLimiter(t, rdb, cfg)
	h := lim.Middleware(okHandler)
	allowed := 0
	for range 10 {
		w := do(h, "198.51.100.8:1", likePath, nil)
		switch w.Code {
		case http.StatusOK:
			allowed++
		case http.StatusTooManyRequests:
		default:
			t.Fatalf("status %d", w.Code)
		}
	}
	if allowed != 4 {
		t.Fatalf("allowed %d with Redis down (fail open, local limit 4)", allowed)
	}
	st := lim.Stats()
	if !st.RedisDown || st.RedisErrors == 0 || st.LocalDecisions != 10 || st.Rejected != 6 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRedisUnreachableFailClosed(t *testing.T) {
	rdb := NewRedisClient(testenv.ClosedAddr(t), "", 0)
	t.Cleanup(func() { rdb.Close() })
	cfg := cfgWith(func(c *Config) { c.WriteIP = "4-H"; c.RedisDown = FailClosed })
	lim := newLimiter(t, rdb, cfg)
	mux := http.NewServeMux()
	mux.Handle(counterv1connect.NewCounterServiceHandler(stubCounter{}))
	url, hc := rpctest.Serve(t, lim.Middleware(mux))
	for _, p := range rpctest.Protocols {
		client := counterv1connect.NewCounterServiceClient(hc, url, p.Opts...)
		_, err := client.Like(context.Background(), connect.NewRequest(&counterv1.LikeRequest{}))
		if connect.CodeOf(err) != connect.CodeUnavailable {
			t.Fatalf("%s: %v, want Unavailable", p.Name, err)
		}
	}
	if w := do(lim.Middleware(okHandler), "198.51.100.9:1", likePath, nil); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("connect status %d, want 503", w.Code)
	}
	if st := lim.Stats(); st.FailedClosed != 4 || st.Allowed != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRedisStopsAndComesBack: shared budget → Redis gone (fail open, local
// budget, never a panic or a 5xx) → Redis back (shared budget again).
func TestRedisStopsAndComesBack(t *testing.T) {
	direct := realRedis(t)
	prefix := testPrefix(t, direct)
	proxy := testenv.NewTCPProxy(t, "127.0.0.1:0", testenv.RedisAddr(t))
	proxyAddr := proxy.Addr()
	rdb := NewRedisClient(proxyAddr, "", 0)
	t.Cleanup(func() { rdb.Close() })
	cfg := cfgWith(func(c *Config) { c.WriteIP = "3-H" })
	lim := newLimiter(t, rdb, cfg, WithKeyPrefix(prefix), WithProbeInterval(50*time.Millisecond))
	h := lim.Middleware(okHandler)
	count := func(n int) (ok int) {
		for range n {
			switch w := do(h, "198.51.100.10:1", likePath, nil); w.Code {
			case http.StatusOK:
				ok++
			case http.StatusTooManyRequests:
			default:
				t.Fatalf("status %d", w.Code)
			}
		}
		return ok
	}
	if got := count(5); got != 3 {
		t.Fatalf("shared budget: allowed %d, want 3", got)
	}
	proxy.Close()
	// The exhausted shared budget stays exhausted until its window ends
	// (remembered locally), and the other clients get the in-process
	// limiter's budget.
	if got := count(5); got != 0 {
		t.Fatalf("exhausted budget during outage: allowed %d, want 0", got)
	}
	other := 0
	for range 5 {
		if w := do(h, "198.51.100.12:1", likePath, nil); w.Code == http.StatusOK {
			other++
		} else if w.Code != http.StatusTooManyRequests {
			t.Fatalf("status %d", w.Code)
		}
	}
	if other != 3 {
		t.Fatalf("fail-open local budget: allowed %d, want 3", other)
	}
	if !lim.Stats().RedisDown {
		t.Fatal("Redis outage not noticed")
	}
	testenv.NewTCPProxy(t, proxyAddr, testenv.RedisAddr(t))
	testenv.Eventually(t, 10*time.Second, "the limiter to go back to Redis", func() bool {
		if !lim.Stats().RedisDown {
			return true
		}
		// Requests drive the probes (the exhausted budget is answered
		// from the local cache, so use another client).
		do(h, "198.51.100.13:1", likePath, nil)
		return false
	})
	// Back on the shared budget, which is exhausted.
	if got := count(3); got != 0 {
		t.Fatalf("after recovery: allowed %d, want 0 (shared budget spent)", got)
	}
}

func TestRedisDownAtStartIsProbedInBackground(t *testing.T) {
	direct := realRedis(t)
	prefix := testPrefix(t, direct)
	addr := testenv.ClosedAddr(t)
	rdb := NewRedisClient(addr, "", 0)
	t.Cleanup(func() { rdb.Close() })
	cfg := cfgWith(func(c *Config) { c.WriteIP = "100-H" })
	lim := newLimiter(t, rdb, cfg, WithKeyPrefix(prefix), WithProbeInterval(50*time.Millisecond))
	if !lim.Stats().RedisDown {
		t.Fatal("want degraded start")
	}
	testenv.NewTCPProxy(t, addr, testenv.RedisAddr(t))
	h := lim.Middleware(okHandler)
	testenv.Eventually(t, 10*time.Second, "the limiter to connect to Redis", func() bool {
		if !lim.Stats().RedisDown {
			return true
		}
		if w := do(h, "198.51.100.11:1", likePath, nil); w.Code != http.StatusOK {
			t.Fatalf("status %d", w.Code)
		}
		return false
	})
	do(h, "198.51.100.11:1", likePath, nil)
	n, err := direct.Exists(context.Background(), prefix+":ip:w:198.51.100.11").Result()
	if err != nil || n != 1 {
		t.Fatalf("budget key not in Redis after recovery: %d %v", n, err)
	}
}

func TestConfigFrom(t *testing.T) {
	r := configReader(map[string]string{
		"HGP_RATE_WRITE_USER":      "5-S",
		"HGP_RATE_READ_IP":         "off",
		"HGP_RATE_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.0.1",
		"HGP_RATE_REDIS_DOWN":      "closed",
	})
	c := ConfigFrom(r)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if c.WriteUser != "5-S" || c.ReadUser != "200-S" || c.ReadIP != "off" || c.RedisDown != FailClosed || len(c.TrustedProxies) != 2 {
		t.Fatalf("config %+v", c)
	}
	bad := configReader(map[string]string{
		"HGP_RATE_WRITE_USER":      "many-S",
		"HGP_RATE_READ_USER":       "10-W",
		"HGP_RATE_TRUSTED_PROXIES": "10.0.0.0/99",
		"HGP_RATE_REDIS_DOWN":      "maybe",
	})
	ConfigFrom(bad)
	err := bad.Err()
	for _, name := range []string{"HGP_RATE_WRITE_USER", "HGP_RATE_READ_USER", "HGP_RATE_TRUSTED_PROXIES", "HGP_RATE_REDIS_DOWN"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("error %v does not name %s", err, name)
		}
	}
}
