package gateway_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/consul/api"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/liveconfig"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/gateway"
	"github.com/highgopress/highgopress/services/gateway/proxy"
	"github.com/highgopress/highgopress/services/gateway/route"
)

// staticBalancer routes every backend service of the default routes to u.
func staticBalancer(t *testing.T, backend string) proxy.Balancer {
	t.Helper()
	u, err := url.Parse(backend)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]*url.URL{}
	for _, r := range route.Default().Routes() {
		m[r.Backend] = []*url.URL{u}
	}
	b, err := proxy.NewRoundRobin(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLiveConfigAcrossReplicas: two gateway replicas take their run-time
// settings from one Consul server's KV: a new write budget is enforced by
// both without restart; a bad document is rejected whole (counted, the old
// budget stays); stopping and starting Consul changes nothing; the degrade
// switch refuses writes and keeps reads, and turning it off restores writes.
func TestLiveConfigAcrossReplicas(t *testing.T) {
	agent := testenv.StartConsulServer(t)
	backend := newFakeBackend().serve(t)
	vars := rateVars(t, backend, testenv.RedisAddr(t), unique("hgp:gwtest:live"), map[string]string{
		"HGP_RATE_WRITE_USER": "100-H",
		"HGP_CONSUL_ADDR":     agent.Addr(),
	})
	replicas := []*runningGateway{
		startGateway(t, vars, gateway.WithBalancer(staticBalancer(t, backend))),
		startGateway(t, vars, gateway.WithBalancer(staticBalancer(t, backend))),
	}
	kv := consulAPI(t, agent.Addr()).KV()
	put := func(doc string) time.Time {
		t.Helper()
		testenv.EventuallyNoError(t, 30*time.Second, "consul kv put", func() error {
			_, err := kv.Put(&api.KVPair{Key: liveconfig.Key("gateway"), Value: []byte(doc)}, nil)
			return err
		})
		return time.Now()
	}
	// likes spends n writes of a fresh user, alternating replicas, and
	// returns how many were allowed.
	likes := func(n int) int {
		t.Helper()
		tok := token(t, unique("live"))
		allowed := 0
		for i := range n {
			gw := replicas[i%len(replicas)]
			cs := counterv1connect.NewCounterServiceClient(gw.client, gw.url, withHeaders(bearer(tok)))
			_, err := cs.Like(context.Background(), connect.NewRequest(&counterv1.LikeRequest{Item: item("live")}))
			switch {
			case err == nil:
				allowed++
			case connect.CodeOf(err) == connect.CodeResourceExhausted:
			default:
				t.Fatalf("like %d on replica %d: %v", i, i%len(replicas), err)
			}
		}
		return allowed
	}
	waitAll := func(what string, since time.Time, cond func(gateway.LiveStatus) bool) {
		t.Helper()
		for i, gw := range replicas {
			testenv.Eventually(t, 20*time.Second, what, func() bool { return cond(gw.g.LiveStatus()) })
			t.Logf("replica %d: %s after %v", i, what, time.Since(since).Round(time.Millisecond))
		}
	}

	if got := likes(5); got != 5 {
		t.Fatalf("start-up budget of 100/h: %d of 5 likes allowed", got)
	}

	at := put(`{"HGP_RATE_WRITE_USER": "3-H"}`)
	waitAll("budget 3-H in force", at, func(s gateway.LiveStatus) bool { return s.Settings.Rate.WriteUser == "3-H" })
	if got := likes(5); got != 3 {
		t.Fatalf("after the KV change to 3/h: %d of 5 likes allowed, want 3", got)
	}
	good := replicas[0].g.LiveStatus().Version

	at = put(`{"HGP_RATE_WRITE_USER": "50-H", "HGP_RATE_READ_IP": "lots"}`)
	waitAll("bad document rejected", at, func(s gateway.LiveStatus) bool { return s.Rejected == 1 })
	for i, gw := range replicas {
		st := gw.g.LiveStatus()
		if st.Settings.Rate.WriteUser != "3-H" || !strings.Contains(st.LastRejection, "HGP_RATE_READ_IP") {
			t.Fatalf("replica %d after a bad document: %+v (version was %v)", i, st, good)
		}
	}
	if got := likes(5); got != 3 {
		t.Fatalf("after a rejected document: %d of 5 likes allowed, want the old budget's 3", got)
	}

	agent.Kill()
	if got := likes(5); got != 3 {
		t.Fatalf("consul down: %d of 5 likes allowed, want 3", got)
	}
	agent.Start(t)
	at = put(`{"HGP_RATE_WRITE_USER": "3-H", "HGP_GATEWAY_READ_ONLY": "true", "HGP_APISTATS_FLUSH_INTERVAL": "2s"}`)
	waitAll("read-only mode on", at, func(s gateway.LiveStatus) bool {
		return s.Settings.ReadOnly && s.Settings.APIStatsFlush == 2*time.Second
	})
	for i, gw := range replicas {
		if st := gw.g.LiveStatus(); st.Rejected != 1 {
			t.Fatalf("replica %d: %d rejections after consul restarted, want still 1", i, st.Rejected)
		}
		cs := counterv1connect.NewCounterServiceClient(gw.client, gw.url, withHeaders(bearer(token(t, unique("ro")))))
		_, err := cs.Like(context.Background(), connect.NewRequest(&counterv1.LikeRequest{Item: item("live")}))
		wantCode(t, err, connect.CodeUnavailable, "read-only mode")
		if _, err := cs.GetCounts(context.Background(), connect.NewRequest(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item("live")}})); err != nil {
			t.Fatalf("replica %d: read in read-only mode: %v", i, err)
		}
	}

	at = put(`{"HGP_RATE_WRITE_USER": "3-H"}`)
	waitAll("read-only mode off", at, func(s gateway.LiveStatus) bool { return !s.Settings.ReadOnly })
	if got := likes(4); got != 3 {
		t.Fatalf("after read-only mode off: %d of 4 likes allowed, want 3", got)
	}

	// Deleting the document returns to the environment's settings.
	if _, err := kv.Delete(liveconfig.Key("gateway"), nil); err != nil {
		t.Fatal(err)
	}
	waitAll("environment budget back", time.Now(), func(s gateway.LiveStatus) bool { return s.Settings.Rate.WriteUser == "100-H" })
	if got := likes(5); got != 5 {
		t.Fatalf("after the document was deleted: %d of 5 likes allowed, want 5", got)
	}
}
