package gateway_test

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/gateway"
	"github.com/highgopress/highgopress/services/gateway/proxy"
	"github.com/redis/go-redis/v9"
)

// routeLog is the gateway's transport to backends, wrapped to record which
// instance every attempt went to, when, and how many are in flight.
type routeLog struct {
	base http.RoundTripper

	mu       sync.Mutex
	hits     map[string]int
	last     map[string]time.Time
	inflight map[string]int
	after    map[string]int // attempts sent after mark
	mark     time.Time
}

func newRouteLog() *routeLog {
	return &routeLog{
		base:     server.NewH2CTransport(),
		hits:     map[string]int{},
		last:     map[string]time.Time{},
		inflight: map[string]int{},
		after:    map[string]int{},
	}
}

func (l *routeLog) RoundTrip(r *http.Request) (*http.Response, error) {
	host := r.URL.Host
	l.mu.Lock()
	now := time.Now()
	l.hits[host]++
	l.last[host] = now
	l.inflight[host]++
	if !l.mark.IsZero() && now.After(l.mark) {
		l.after[host]++
	}
	l.mu.Unlock()
	resp, err := l.base.RoundTrip(r)
	if err != nil {
		l.done(host)
		return nil, err
	}
	resp.Body = &doneOnClose{ReadCloser: resp.Body, done: func() { l.done(host) }}
	return resp, nil
}

func (l *routeLog) done(host string) {
	l.mu.Lock()
	l.inflight[host]--
	l.mu.Unlock()
}

// setMark starts counting attempts per instance from now; it returns the
// attempts in flight per instance at this moment.
func (l *routeLog) setMark() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mark = time.Now()
	out := map[string]int{}
	for k, v := range l.inflight {
		out[k] = v
	}
	return out
}

func (l *routeLog) snapshot(host string) (hits int, last time.Time, after int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.hits[host], l.last[host], l.after[host]
}

type doneOnClose struct {
	io.ReadCloser
	done func()
	once sync.Once
}

func (d *doneOnClose) Close() error {
	err := d.ReadCloser.Close()
	d.once.Do(d.done)
	return err
}

// consulPair is two real counter processes registered in the real Consul
// agent under a tag of one run, and a gateway routing to them through
// Consul's catalog (filtered on that tag, rate limiting off) with every
// attempt recorded in rl; itemID is an item of the run in rdb.
type consulPair struct {
	consulAddr       string
	victim, survivor *counterProc
	gw               *runningGateway
	rl               *routeLog
	rdb              *redis.Client
	itemID           string
}

// startConsulPair starts a consulPair (gatewayVars add to the gateway's
// settings) and waits until the gateway's watcher lists both counters.
func startConsulPair(t *testing.T, name string, gatewayVars map[string]string) *consulPair {
	t.Helper()
	p := &consulPair{consulAddr: testenv.ConsulAddr(t), rl: newRouteLog()}
	redisAddr := testenv.RedisAddr(t)
	tag := unique("gw" + name)
	counterVars := map[string]string{
		"HGP_CONSUL_ADDR":           p.consulAddr,
		"HGP_CONSUL_CHECK_INTERVAL": "1s",
		"HGP_CONSUL_TAGS":           tag,
	}
	p.victim = startCounter(t, redisAddr, counterVars)
	p.survivor = startCounter(t, redisAddr, counterVars)
	vars := map[string]string{
		"HGP_CONSUL_ADDR":        p.consulAddr,
		"HGP_GATEWAY_CONSUL_TAG": tag,
		"HGP_RATE_ENABLED":       "false",
	}
	maps.Copy(vars, gatewayVars)
	p.gw = startGateway(t, vars, gateway.WithProxyOptions(proxy.WithTransport(p.rl)))
	both := []string{p.victim.addr, p.survivor.addr}
	slices.Sort(both)
	testenv.Eventually(t, 20*time.Second, "gateway's watcher lists both counters", func() bool {
		return slices.Equal(p.gw.g.Instances("counter"), both)
	})
	p.rdb = counterRedis(t, redisAddr)
	p.itemID = unique(name)
	t.Cleanup(func() { dropItemKeys(p.rdb, "article", p.itemID) })
	return p
}

// TestFailoverKill9UnderLoad is the failover promise end to end (a dead
// instance stops receiving traffic within seconds; reads are retried
// elsewhere, writes are not blindly retried): two real counter processes
// registered in the real Consul agent (with a tag of this run, which the
// gateway filters on), the gateway routing through
// Consul, reads and writes from concurrent clients over all three
// protocols, and one counter killed with SIGKILL mid-load.
//
//   - reads see no error (a read that hits the dead instance is retried once
//     on the other one);
//   - writes fail at most for the requests in flight on the dead instance
//     (never retried: they may have been applied), bounded by the number of
//     concurrent writers;
//   - the dead instance gets no traffic once the gateway's watcher dropped
//     it, and the windows (kill → watcher drop, kill → last request routed
//     to it) are logged;
//   - Redis holds exactly the acknowledged likes, plus at most the failed
//     ones (a request the dead instance applied but could not answer).
func TestFailoverKill9UnderLoad(t *testing.T) {
	pair := startConsulPair(t, "failover", map[string]string{"HGP_GATEWAY_MAX_TIMEOUT": "5s"})
	victim, survivor, gw, rl, rdb, itemID := pair.victim, pair.survivor, pair.gw, pair.rl, pair.rdb, pair.itemID
	consul := consulAPI(t, pair.consulAddr)
	t.Cleanup(func() {
		// The killed instance never deregistered itself.
		host, port, _ := net.SplitHostPort(victim.addr)
		_ = consul.Agent().ServiceDeregister("counter-" + host + "-" + port)
	})

	const readers, writers = 4, 4
	var (
		stop             = make(chan struct{})
		wg               sync.WaitGroup
		reads, readErrs  atomic.Int64
		acked, writeErrs atomic.Int64
		mu               sync.Mutex
		ackedUsers       []string
		errMsgs          = map[string]int{}
	)
	noteErr := func(kind string, err error) {
		mu.Lock()
		errMsgs[kind+": "+err.Error()]++
		mu.Unlock()
	}
	for i := range readers {
		p := rpctest.Protocols[i%len(rpctest.Protocols)]
		cs := counterv1connect.NewCounterServiceClient(gw.client, gw.url, p.Opts...)
		wg.Go(func() {
			for n := 0; n < 1_000_000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := cs.GetCounts(ctx, connect.NewRequest(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item(itemID)}}))
				cancel()
				reads.Add(1)
				if err != nil {
					readErrs.Add(1)
					noteErr("read/"+p.Name, err)
				}
			}
		})
	}
	for i := range writers {
		p := rpctest.Protocols[i%len(rpctest.Protocols)]
		wg.Go(func() {
			for n := 0; n < 1_000_000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				user := fmt.Sprintf("fw%d-%d", i, n)
				cs := counterv1connect.NewCounterServiceClient(gw.client, gw.url, append(p.Opts, withHeaders(bearer(token(t, user))))...)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				res, err := cs.Like(ctx, connect.NewRequest(&counterv1.LikeRequest{Item: item(itemID)}))
				cancel()
				if err != nil {
					writeErrs.Add(1)
					noteErr("write/"+p.Name, err)
					continue
				}
				if !res.Msg.GetChanged() {
					noteErr("write/"+p.Name, fmt.Errorf("like by new user %s did not change state", user))
				}
				acked.Add(1)
				mu.Lock()
				ackedUsers = append(ackedUsers, user)
				mu.Unlock()
			}
		})
	}
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	t.Cleanup(stopLoad)

	testenv.Eventually(t, 20*time.Second, "load on both instances", func() bool {
		a, _, _ := rl.snapshot(victim.addr)
		b, _, _ := rl.snapshot(survivor.addr)
		return a > 100 && b > 100
	})
	if n := readErrs.Load() + writeErrs.Load(); n != 0 {
		t.Fatalf("%d calls failed before the kill: %v", n, errMsgs)
	}

	inflight := rl.setMark() // attempts in flight when the kill is sent
	killedAt := time.Now()
	victim.kill9()
	watcherWindow := testenv.Eventually(t, 20*time.Second, "gateway's watcher drops the killed counter", func() bool {
		return slices.Equal(gw.g.Instances("counter"), []string{survivor.addr})
	})
	droppedAt := killedAt.Add(watcherWindow)
	// Keep the load going for a while after the drop.
	callsAtDrop := reads.Load() + acked.Load()
	testenv.Eventually(t, 20*time.Second, "more calls after the drop", func() bool {
		return reads.Load()+acked.Load() > callsAtDrop+400
	})
	stopLoad()

	_, lastToDead, sentToDeadAfterKill := rl.snapshot(victim.addr)
	survivorHits, _, _ := rl.snapshot(survivor.addr)
	lastWindow := lastToDead.Sub(killedAt)
	st := gw.g.Stats()
	lastAttempt := "none after the kill"
	if sentToDeadAfterKill > 0 {
		lastAttempt = lastWindow.Round(time.Millisecond).String() + " after the kill"
	}
	t.Logf("kill -9 → watcher dropped the instance: %v; last attempt routed to it: %s "+
		"(%d attempts sent to it after the kill, %d in flight at the kill); ejections %d",
		watcherWindow.Round(time.Millisecond), lastAttempt, sentToDeadAfterKill,
		inflight[victim.addr], st.Backends.Balancer.Ejections)
	t.Logf("reads %d (failed %d), writes acknowledged %d (failed %d), survivor attempts %d",
		reads.Load(), readErrs.Load(), acked.Load(), writeErrs.Load(), survivorHits)

	if n := readErrs.Load(); n != 0 {
		t.Errorf("%d of %d reads failed during failover: %v", n, reads.Load(), errMsgs)
	}
	if n := writeErrs.Load(); n > writers {
		t.Errorf("%d writes failed; at most %d (one in flight per writer) may: %v", n, writers, errMsgs)
	}
	if len(errMsgs) != 0 {
		t.Logf("errors: %v", errMsgs)
	}
	if lastToDead.After(droppedAt) {
		t.Errorf("an attempt was routed to the dead instance %v after the watcher dropped it", lastToDead.Sub(droppedAt))
	}
	if st.Backends.Balancer.Ejections == 0 && sentToDeadAfterKill > 0 {
		t.Errorf("attempts failed on the dead instance but the balancer never ejected it")
	}

	// Redis: every acknowledged like is there, nothing else but (at most)
	// the failed ones.
	ctx := context.Background()
	set := "hgp:lk:{article:" + itemID + "}"
	card, err := rdb.SCard(ctx, set).Result()
	if err != nil {
		t.Fatal(err)
	}
	count, err := rdb.HGet(ctx, "hgp:c:{article:"+itemID+"}", "likes").Int64()
	if err != nil {
		t.Fatal(err)
	}
	if count != card || count < acked.Load() || count > acked.Load()+writeErrs.Load() {
		t.Fatalf("redis: likes %d, like set %d; acknowledged %d, failed %d", count, card, acked.Load(), writeErrs.Load())
	}
	mu.Lock()
	users := slices.Clone(ackedUsers)
	mu.Unlock()
	sort.Strings(users)
	members := make([]any, len(users))
	for i, u := range users {
		members[i] = u
	}
	if len(members) > 0 {
		in, err := rdb.SMIsMember(ctx, set, members...).Result()
		if err != nil {
			t.Fatal(err)
		}
		for i, ok := range in {
			if !ok {
				t.Fatalf("acknowledged like by %s is not in redis", users[i])
			}
		}
	}
}
