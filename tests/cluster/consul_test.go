package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"sort"
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
	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/platform/testenv"
)

// consulPorts are every port of a consul-cluster on base (tools/mw's
// layout: agent j uses base+10j .. base+10j+3).
func consulPorts(base int) []int {
	var p []int
	for j := 1; j <= 4; j++ {
		for k := range 4 {
			p = append(p, base+10*j+k)
		}
	}
	return p
}

// consulGet decodes a JSON answer of the agent at addr.
func consulGet(addr, path string, out any) error {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// tokens mints a token per user with the devtoken command.
func tokens(t testing.TB, users int) []string {
	t.Helper()
	out := make([]string, users)
	for u := range users {
		b, err := exec.Command(binary(t, "devtoken"), "-secret", jwtSecret, "-sub", "cu"+strconv.Itoa(u)).Output()
		if err != nil {
			t.Fatalf("devtoken: %v", err)
		}
		out[u] = strings.TrimSpace(string(b))
	}
	return out
}

// gatewayLoad sends likes and unlikes through the gateway from users
// goroutines, one request per user per 50 ms at most, and counts the
// answers by outcome.
type gatewayLoad struct {
	ok     atomic.Int64
	mu     sync.Mutex
	errors map[string]int // "<code>: <message>" → count
	stop   chan struct{}
	wg     sync.WaitGroup
}

func startGatewayLoad(t testing.TB, gatewayURL string, toks []string, items int) *gatewayLoad {
	l := &gatewayLoad{errors: map[string]int{}, stop: make(chan struct{})}
	client := counterv1connect.NewCounterServiceClient(server.NewH2CClient(), gatewayURL)
	prefix := "cl" + strconv.Itoa(rand.IntN(1e6))
	for u, tok := range toks {
		l.wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(u), 7))
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
				ref := &counterv1.ItemRef{Namespace: "article", Id: prefix + "-" + strconv.Itoa(rng.IntN(items))}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				var err error
				if rng.IntN(3) == 0 {
					req := connect.NewRequest(&counterv1.UnlikeRequest{Item: ref})
					req.Header().Set("Authorization", "Bearer "+tok)
					_, err = client.Unlike(ctx, req)
				} else {
					req := connect.NewRequest(&counterv1.LikeRequest{Item: ref})
					req.Header().Set("Authorization", "Bearer "+tok)
					_, err = client.Like(ctx, req)
				}
				cancel()
				if err == nil {
					l.ok.Add(1)
					continue
				}
				key := connect.CodeOf(err).String() + ": " + err.Error()
				if len(key) > 160 {
					key = key[:160]
				}
				l.mu.Lock()
				l.errors[key]++
				l.mu.Unlock()
			}
		})
	}
	t.Cleanup(l.finish)
	return l
}

var stopOnce sync.Map

func (l *gatewayLoad) finish() {
	if _, done := stopOnce.LoadOrStore(l, true); !done {
		close(l.stop)
	}
	l.wg.Wait()
}

// failures returns the errors, and how many were discovery's: no instance
// to send to (the gateway's "no backend available", Unavailable).
func (l *gatewayLoad) failures() (all map[string]int, total, discovery int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	all = map[string]int{}
	for k, n := range l.errors {
		all[k] = n
		total += n
		if strings.HasPrefix(k, "unavailable") && strings.Contains(k, "no backend") {
			discovery += n
		}
	}
	return all, total, discovery
}

// TestConsulLeaderKilled: three Consul servers and a client agent; two
// counters register through the client agent and a gateway watches the
// catalog through it. Under a steady load of likes through the gateway the
// raft leader is killed with SIGKILL: a new leader is elected, no request
// fails for want of an instance (the gateway routes from its last known
// catalog while the servers elect), and the gateway resumes watching: a
// third counter registered after the election receives traffic.
func TestConsulLeaderKilled(t *testing.T) {
	c := newCluster(t, "consul-cluster", "HGP_MW_CONSUL_CLUSTER_PORT", consulPorts, true)
	t.Cleanup(func() { c.stop(t) })
	took, err := c.do(t, "start")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("consul-cluster up (three servers, one client agent) after %s", took.Round(time.Millisecond))
	agent := "127.0.0.1:" + strconv.Itoa(c.base+40)

	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t), DB: redisDB})
	t.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.FlushDB(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	counter := func(name string) (*proc, string) {
		addr, metrics := freeAddr(t), freeAddr(t)
		p := startProc(t, "counter", name, addr, map[string]string{
			"HGP_IDENTITY_SECRET":       identitySecret,
			"HGP_COUNTER_ADDR":          addr,
			"HGP_METRICS_ADDR":          metrics,
			"HGP_REDIS_ADDR":            rdb.Options().Addr,
			"HGP_REDIS_DB":              strconv.Itoa(redisDB),
			"HGP_CONSUL_ADDR":           agent,
			"HGP_CONSUL_CHECK_INTERVAL": "1s",
			"HGP_COUNTER_CACHE_TTL":     "0s",
			"HGP_LOG_LEVEL":             "warn",
		})
		return p, "http://" + metrics + "/metrics"
	}
	served := func(metrics string) float64 {
		v, _ := metric(metrics, "hgp_rpc_server_requests_total", "CounterService")
		return v
	}
	_, m1 := counter("counter-1")
	_, m2 := counter("counter-2")
	gwAddr := freeAddr(t)
	startProc(t, "gateway", "gateway", gwAddr, map[string]string{
		"HGP_GATEWAY_ADDR":     gwAddr,
		"HGP_METRICS_ADDR":     freeAddr(t),
		"HGP_CONSUL_ADDR":      agent,
		"HGP_IDENTITY_SECRET":  identitySecret,
		"HGP_JWT_HS256_SECRET": jwtSecret,
		"HGP_LOG_LEVEL":        "warn",
	})
	toks := tokens(t, 20)
	poll(t, 60*time.Second, 200*time.Millisecond, "both counters passing in the catalog", func() error {
		var entries []json.RawMessage
		if err := consulGet(agent, "/v1/health/service/counter?passing=1", &entries); err != nil {
			return err
		}
		if len(entries) != 2 {
			return fmt.Errorf("%d passing counters", len(entries))
		}
		return nil
	})

	l := startGatewayLoad(t, "http://"+gwAddr, toks, 50)
	poll(t, 60*time.Second, 200*time.Millisecond, "traffic on both counters", func() error {
		if a, b := served(m1), served(m2); a < 50 || b < 50 {
			return fmt.Errorf("counter-1 served %.0f, counter-2 %.0f", a, b)
		}
		return nil
	})

	var leader string
	if err := consulGet(agent, "/v1/status/leader", &leader); err != nil || leader == "" {
		t.Fatalf("leader %q: %v", leader, err)
	}
	_, portS, _ := strings.Cut(leader, ":")
	port, _ := strconv.Atoi(portS)
	j := (port - c.base - 1) / 10
	if j < 1 || j > 3 {
		t.Fatalf("leader %s is not one of the cluster's servers (base %d)", leader, c.base)
	}
	okBefore := l.ok.Load()
	killed := time.Now()
	c.kill9(t, strconv.Itoa(j))
	var newLeader string
	elected := poll(t, 60*time.Second, 100*time.Millisecond, "a new raft leader", func() error {
		var ld string
		if err := consulGet(agent, "/v1/status/leader", &ld); err != nil {
			return err
		}
		if ld == "" || ld == leader {
			return fmt.Errorf("leader %q", ld)
		}
		newLeader = ld
		return nil
	})
	t.Logf("killed the leader consul-cluster-%d (%s) with %d requests answered; new leader %s after %s",
		j, leader, okBefore, newLeader, elected.Round(time.Millisecond))

	// the gateway resumes watching: a counter registered now gets traffic
	registered := time.Now()
	_, m3 := counter("counter-3")
	resumed := poll(t, 60*time.Second, 100*time.Millisecond, "traffic on the counter registered after the election", func() error {
		if v := served(m3); v < 1 {
			return fmt.Errorf("counter-3 served %.0f", v)
		}
		return nil
	})
	after := l.ok.Load()
	poll(t, 60*time.Second, 100*time.Millisecond, "requests after the failover", func() error {
		if n := l.ok.Load(); n < after+500 {
			return fmt.Errorf("%d since", n-after)
		}
		return nil
	})
	l.finish()
	errs, total, discovery := l.failures()
	keys := make([]string, 0, len(errs))
	for k := range errs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Logf("failed %d× %s", errs[k], k)
	}
	t.Logf("RESULT consul leader killed: %d requests answered, %d failed (%d for discovery reasons); new leader after %s; "+
		"a counter registered after the election got traffic %s later (%s after the kill); counters served %.0f / %.0f / %.0f",
		l.ok.Load(), total, discovery, elected.Round(time.Millisecond), resumed.Round(time.Millisecond),
		(registered.Sub(killed) + resumed).Round(time.Millisecond),
		served(m1), served(m2), served(m3))
	if discovery > 0 {
		t.Fatalf("%d requests failed for want of an instance while the Consul leader was replaced", discovery)
	}
	if total > 0 {
		t.Errorf("%d requests failed during the Consul failover (none should: every counter stayed up)", total)
	}
}
