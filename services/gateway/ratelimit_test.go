package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/testenv"
)

// rateVars configures a gateway in front of backend with rate limiting on
// the real Redis, under a key prefix of this test, every budget off unless
// set in budgets.
func rateVars(t *testing.T, backend, redisAddr, prefix string, budgets map[string]string) map[string]string {
	t.Helper()
	v := map[string]string{
		"HGP_GATEWAY_COUNTER_URLS": backend,
		"HGP_REDIS_ADDR":           redisAddr,
		"HGP_RATE_KEY_PREFIX":      prefix,
		"HGP_RATE_WRITE_USER":      "off",
		"HGP_RATE_READ_USER":       "off",
		"HGP_RATE_WRITE_IP":        "off",
		"HGP_RATE_READ_IP":         "off",
		// An infrastructure budget, not a latency claim: on a loaded
		// machine under -race a Redis round trip can take far longer than
		// the 100 ms default, and a limiter that fails open to its local
		// budget would make the counts below meaningless.
		"HGP_RATE_REDIS_TIMEOUT": "10s",
	}
	for k, val := range budgets {
		v[k] = val
	}
	return v
}

// outcome tallies the results of rate-limited calls.
type outcome struct {
	allowed, limited atomic.Int64
	mu               sync.Mutex
	other            []error
}

// note records one call: allowed (with RateLimit-Remaining set), or
// rejected with ResourceExhausted carrying Retry-After and the RateLimit
// headers; anything else is an error.
func (o *outcome) note(hdr http.Header, err error) {
	if err == nil {
		if hdr.Get("RateLimit-Remaining") == "" || hdr.Get("RateLimit-Limit") == "" {
			o.fail(fmt.Errorf("allowed response without RateLimit headers: %v", hdr))
			return
		}
		o.allowed.Add(1)
		return
	}
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeResourceExhausted {
		o.fail(err)
		return
	}
	if ce.Meta().Get("Retry-After") == "" || ce.Meta().Get("RateLimit-Remaining") != "0" ||
		!strings.Contains(ce.Message(), "rate limit exceeded") {
		o.fail(fmt.Errorf("rejection without Retry-After/RateLimit headers: %v %v", err, ce.Meta()))
		return
	}
	o.limited.Add(1)
}

func (o *outcome) fail(err error) {
	o.mu.Lock()
	o.other = append(o.other, err)
	o.mu.Unlock()
}

func (o *outcome) check(t *testing.T, what string, total, wantAllowed int64) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.other) > 0 {
		t.Fatalf("%s: unexpected results: %v", what, o.other)
	}
	if o.allowed.Load() != wantAllowed || o.allowed.Load()+o.limited.Load() != total {
		t.Fatalf("%s: %d allowed, %d limited of %d; want exactly %d allowed", what, o.allowed.Load(), o.limited.Load(), total, wantAllowed)
	}
}

// requireRedisDecided fails unless every decision of gw came from the shared
// Redis budget: a count that was right only because the local fallback
// happened to agree proves nothing about sharing.
func requireRedisDecided(t *testing.T, what string, gw *runningGateway) {
	t.Helper()
	st := gw.g.Stats().RateLimit
	if st == nil || st.RedisErrors != 0 || st.LocalDecisions != 0 || st.RedisDown {
		t.Fatalf("%s: limiter did not decide on Redis alone: %+v", what, st)
	}
}

// TestRateLimitSharedByReplicas: two gateway replicas on one Redis spend
// one budget per user (writes and reads separately), whatever replica and
// protocol a call uses; allowed responses carry the remaining budget,
// rejections are ResourceExhausted with Retry-After in every protocol.
func TestRateLimitSharedByReplicas(t *testing.T) {
	redisAddr := testenv.RedisAddr(t)
	backend := newFakeBackend().serve(t)
	vars := rateVars(t, backend, redisAddr, unique("hgp:gwtest:rl"), map[string]string{
		"HGP_RATE_WRITE_USER": "7-H",
		"HGP_RATE_READ_USER":  "4-H",
	})
	replicas := []*runningGateway{startGateway(t, vars), startGateway(t, vars)}
	user := unique("alice")
	tok := token(t, user)

	var writes, reads outcome
	const perReplicaAndProtocol = 6
	var wg sync.WaitGroup
	for _, gw := range replicas {
		for _, p := range rpctest.Protocols {
			cs := counterv1connect.NewCounterServiceClient(gw.client, gw.url, append(p.Opts, withHeaders(bearer(tok)))...)
			for range perReplicaAndProtocol {
				wg.Go(func() {
					res, err := cs.Like(context.Background(), connect.NewRequest(&counterv1.LikeRequest{Item: item("rl")}))
					var h http.Header
					if err == nil {
						h = res.Header()
					}
					writes.note(h, err)
				})
				wg.Go(func() {
					res, err := cs.GetCounts(context.Background(), connect.NewRequest(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item("rl")}}))
					var h http.Header
					if err == nil {
						h = res.Header()
					}
					reads.note(h, err)
				})
			}
		}
	}
	wg.Wait()
	total := int64(len(replicas) * len(rpctest.Protocols) * perReplicaAndProtocol)
	writes.check(t, "writes of one user", total, 7)
	reads.check(t, "reads of one user", total, 4)
	for i, gw := range replicas {
		requireRedisDecided(t, fmt.Sprintf("replica %d", i), gw)
	}

	// Another user has a budget of their own.
	other := counterv1connect.NewCounterServiceClient(replicas[1].client, replicas[1].url, withHeaders(bearer(token(t, unique("bob")))))
	res, err := other.Like(context.Background(), connect.NewRequest(&counterv1.LikeRequest{Item: item("rl")}))
	if err != nil || res.Header().Get("RateLimit-Remaining") != "6" {
		t.Fatalf("another user's first like: %v (remaining %q)", err, res.Header().Get("RateLimit-Remaining"))
	}
}

// TestRateLimitForgedForwardingHeaders: per-IP budgets shared by two
// replicas; clients rotating X-Forwarded-For, X-Real-IP and Forwarded (and
// users) from one untrusted peer still spend one budget.
func TestRateLimitForgedForwardingHeaders(t *testing.T) {
	redisAddr := testenv.RedisAddr(t)
	backend := newFakeBackend().serve(t)
	vars := rateVars(t, backend, redisAddr, unique("hgp:gwtest:rl"), map[string]string{
		"HGP_RATE_WRITE_IP": "5-H",
		"HGP_RATE_READ_IP":  "3-H",
	})
	replicas := []*runningGateway{startGateway(t, vars), startGateway(t, vars)}
	forged := func(i int) http.Header {
		h := http.Header{}
		ip := fmt.Sprintf("203.0.113.%d", i%250+1)
		h.Set("X-Forwarded-For", ip+", 198.51.100."+fmt.Sprint(rand.IntN(250)+1))
		h.Set("X-Real-IP", ip)
		h.Set("Forwarded", "for="+ip)
		return h
	}
	var writes, reads outcome
	var wg sync.WaitGroup
	n := 0
	for _, gw := range replicas {
		for _, p := range rpctest.Protocols {
			for range 4 {
				n++
				h := forged(n)
				h.Set("Authorization", "Bearer "+token(t, unique("u")))
				cs := counterv1connect.NewCounterServiceClient(gw.client, gw.url, append(p.Opts, withHeaders(h))...)
				anon := counterv1connect.NewCounterServiceClient(gw.client, gw.url, append(p.Opts, withHeaders(forged(n+1000)))...)
				wg.Go(func() {
					res, err := cs.Like(context.Background(), connect.NewRequest(&counterv1.LikeRequest{Item: item("ip")}))
					var hdr http.Header
					if err == nil {
						hdr = res.Header()
					}
					writes.note(hdr, err)
				})
				wg.Go(func() {
					res, err := anon.GetCounts(context.Background(), connect.NewRequest(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item("ip")}}))
					var hdr http.Header
					if err == nil {
						hdr = res.Header()
					}
					reads.note(hdr, err)
				})
			}
		}
	}
	wg.Wait()
	writes.check(t, "writes from one IP with forged headers", int64(n), 5)
	reads.check(t, "anonymous reads from one IP with forged headers", int64(n), 3)
	for i, gw := range replicas {
		requireRedisDecided(t, fmt.Sprintf("replica %d", i), gw)
	}
}

// TestRateLimitTrustedProxy: behind a configured trusted proxy the
// client's address comes from X-Forwarded-For, so two clients have budgets
// of their own.
func TestRateLimitTrustedProxy(t *testing.T) {
	redisAddr := testenv.RedisAddr(t)
	backend := newFakeBackend().serve(t)
	vars := rateVars(t, backend, redisAddr, unique("hgp:gwtest:rl"), map[string]string{
		"HGP_RATE_WRITE_IP":        "2-H",
		"HGP_RATE_TRUSTED_PROXIES": "127.0.0.1/32",
	})
	gw := startGateway(t, vars)
	for _, client := range []string{"192.0.2.10", "192.0.2.11"} {
		var o outcome
		for range 4 {
			h := bearer(token(t, unique("u")))
			// A forged left-most entry does not matter: the proxy appended
			// the real client.
			h.Set("X-Forwarded-For", "10.9.9."+fmt.Sprint(rand.IntN(250))+", "+client)
			cs := counterv1connect.NewCounterServiceClient(gw.client, gw.url, withHeaders(h))
			res, err := cs.Like(context.Background(), connect.NewRequest(&counterv1.LikeRequest{Item: item("tp")}))
			var hdr http.Header
			if err == nil {
				hdr = res.Header()
			}
			o.note(hdr, err)
		}
		o.check(t, "client "+client, 4, 2)
	}
}

// TestRateLimitRedisUnreachable: with Redis at a closed port the gateway
// still starts; fail-open (the default) enforces the limits with the
// in-process limiter, fail-closed answers Unavailable on every protocol
// without reaching the backend.
func TestRateLimitRedisUnreachable(t *testing.T) {
	closed := testenv.ClosedAddr(t)
	t.Run("open", func(t *testing.T) {
		fb := newFakeBackend()
		gw := startGateway(t, rateVars(t, fb.serve(t), closed, "hgp:rl", map[string]string{"HGP_RATE_WRITE_USER": "3-H"}))
		tok := token(t, "carol")
		var o outcome
		for i := range 8 {
			p := rpctest.Protocols[i%len(rpctest.Protocols)]
			cs := counterv1connect.NewCounterServiceClient(gw.client, gw.url, append(p.Opts, withHeaders(bearer(tok)))...)
			res, err := cs.Like(context.Background(), connect.NewRequest(&counterv1.LikeRequest{Item: item("open")}))
			var hdr http.Header
			if err == nil {
				hdr = res.Header()
			}
			o.note(hdr, err)
		}
		o.check(t, "fail-open with the local limiter", 8, 3)
		st := gw.g.Stats().RateLimit
		if st == nil || !st.RedisDown || st.LocalDecisions == 0 || st.RedisErrors == 0 {
			t.Fatalf("limiter stats %+v", st)
		}
	})
	t.Run("closed", func(t *testing.T) {
		fb := newFakeBackend()
		gw := startGateway(t, rateVars(t, fb.serve(t), closed, "hgp:rl", map[string]string{
			"HGP_RATE_WRITE_USER": "3-H", "HGP_RATE_READ_IP": "100-S", "HGP_RATE_REDIS_DOWN": "closed",
		}))
		for _, p := range rpctest.Protocols {
			cs := counterv1connect.NewCounterServiceClient(gw.client, gw.url, append(p.Opts, withHeaders(bearer(token(t, "dave"))))...)
			_, err := cs.Like(context.Background(), connect.NewRequest(&counterv1.LikeRequest{Item: item("closed")}))
			wantCode(t, err, connect.CodeUnavailable, "rate limiter unavailable")
			_, err = cs.GetCounts(context.Background(), connect.NewRequest(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item("closed")}}))
			wantCode(t, err, connect.CodeUnavailable, "rate limiter unavailable")
		}
		if fb.hits.Load() != 0 {
			t.Fatalf("backend reached %d times while failing closed", fb.hits.Load())
		}
		if st := gw.g.Stats().RateLimit; st == nil || st.FailedClosed == 0 {
			t.Fatalf("limiter stats %+v", st)
		}
	})
}

// TestRateLimitRedisStopped: a private redis-server shared by two gateways
// (one fail-open, one fail-closed) is killed mid-run: the fail-open gateway
// keeps serving within its local limits, the fail-closed one refuses.
func TestRateLimitRedisStopped(t *testing.T) {
	rs := testenv.StartRedisServer(t)
	fb := newFakeBackend()
	backend := fb.serve(t)
	budgets := map[string]string{"HGP_RATE_WRITE_USER": "5-H"}
	open := startGateway(t, rateVars(t, backend, rs.Addr, "hgp:rl", budgets))
	budgets["HGP_RATE_REDIS_DOWN"] = "closed"
	closedGW := startGateway(t, rateVars(t, backend, rs.Addr, "hgp:rl", budgets))
	like := func(gw *runningGateway, user string) (http.Header, error) {
		cs := counterv1connect.NewCounterServiceClient(gw.client, gw.url, withHeaders(bearer(token(t, user))))
		res, err := cs.Like(context.Background(), connect.NewRequest(&counterv1.LikeRequest{Item: item("stop")}))
		if err != nil {
			return nil, err
		}
		return res.Header(), nil
	}
	// Shared budget while Redis is up: 3 + 2 of 5.
	var before outcome
	for i := range 7 {
		gw := open
		if i%2 == 1 {
			gw = closedGW
		}
		before.note(like(gw, "erin"))
	}
	before.check(t, "shared budget across fail-open and fail-closed replicas", 7, 5)

	rs.Kill()
	var after outcome
	for range 7 {
		after.note(like(open, "frank"))
	}
	after.check(t, "fail-open after redis died (local budget)", 7, 5)
	for range 3 {
		_, err := like(closedGW, "gina")
		wantCode(t, err, connect.CodeUnavailable, "rate limiter unavailable")
	}
	if st := open.g.Stats().RateLimit; !st.RedisDown || st.LocalDecisions == 0 {
		t.Fatalf("fail-open stats %+v", st)
	}
	if st := closedGW.g.Stats().RateLimit; !st.RedisDown || st.FailedClosed == 0 {
		t.Fatalf("fail-closed stats %+v", st)
	}
}

// TestRateLimitHeadersExposedToBrowsers: with CORS configured, a
// cross-origin call gets the RateLimit headers and the browser is allowed
// to read them.
func TestRateLimitHeadersExposedToBrowsers(t *testing.T) {
	redisAddr := testenv.RedisAddr(t)
	const origin = "https://app.example.test"
	vars := rateVars(t, newFakeBackend().serve(t), redisAddr, unique("hgp:gwtest:rl"), map[string]string{
		"HGP_RATE_READ_IP": "50-H", "HGP_GATEWAY_CORS_ORIGINS": origin,
	})
	gw := startGateway(t, vars)
	req, _ := http.NewRequest(http.MethodPost, gw.url+counterv1connect.CounterServiceGetCountsProcedure, strings.NewReader(`{"items":[{"namespace":"article","id":"c"}]}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", origin)
	resp, err := gw.http1.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	exposed := resp.Header.Get("Access-Control-Expose-Headers")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("RateLimit-Remaining") != "49" ||
		!strings.Contains(exposed, "Ratelimit-Remaining") && !strings.Contains(exposed, "RateLimit-Remaining") ||
		!strings.Contains(strings.ToLower(exposed), "retry-after") {
		t.Fatalf("HTTP %d, RateLimit-Remaining %q, exposed %q", resp.StatusCode, resp.Header.Get("RateLimit-Remaining"), exposed)
	}
}
