package counter_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/platform/bootstrap"
	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/identity"
	"github.com/highgopress/highgopress/platform/liveconfig"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/counter"
)

// TestNamespaceWriteSwitchFromConsul: a counter built with HGP_CONSUL_ADDR
// follows its document in Consul KV: switching a namespace's writes off
// makes likes and increments there answer unavailable while other
// namespaces and every read keep working; a bad document is rejected and
// the switch stays; deleting the document turns writes back on.
func TestNamespaceWriteSwitchFromConsul(t *testing.T) {
	agent := testenv.StartConsulServer(t)
	e := serveBuilt(t, configFor(t, "HGP_CONSUL_ADDR", agent.Addr()))
	cs := e.counters(rpctest.Protocols[0])
	like := func(ns string) error {
		_, err := cs.Like(context.Background(), as(e, "alice", &counterv1.LikeRequest{Item: ref(ns, "x")}))
		return err
	}
	kv, err := api.NewClient(&api.Config{Address: agent.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	put := func(doc string) {
		t.Helper()
		testenv.EventuallyNoError(t, 30*time.Second, "consul kv put", func() error {
			_, err := kv.KV().Put(&api.KVPair{Key: liveconfig.Key(counter.Name), Value: []byte(doc)}, nil)
			return err
		})
	}

	if err := like("article"); err != nil {
		t.Fatalf("like before any switch: %v", err)
	}
	put(`{"HGP_COUNTER_WRITES_OFF": "article,video", "HGP_COUNTER_CACHE_TTL": "0s", "HGP_COUNTER_BATCH_MAX": "16"}`)
	testenv.Eventually(t, 20*time.Second, "writes to article switched off", func() bool {
		return connect.CodeOf(like("article")) == connect.CodeUnavailable
	})
	wantCode(t, "like in a switched-off namespace", like("article"), connect.CodeUnavailable, `writes to namespace "article" are switched off`)
	_, err = cs.Increment(context.Background(), as(e, "alice", &counterv1.IncrementRequest{Item: ref("video", "v"), Metric: "views", Delta: 1, IdempotencyKey: "live-test-1"}))
	wantCode(t, "increment in a switched-off namespace", err, connect.CodeUnavailable, "switched off")
	if err := like("comment"); err != nil {
		t.Fatalf("like in another namespace: %v", err)
	}
	res, err := cs.GetCounts(context.Background(), as(e, "", &counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{ref("article", "x")}}))
	if err != nil || res.Msg.GetCounts()[0].GetLikes() != 1 {
		t.Fatalf("read in a switched-off namespace: %v %v", res, err)
	}

	// A bad namespace rejects the whole document: the switch stays.
	rejected := counterMetric(t, "hgp_config_rejected_total")
	put(`{"HGP_COUNTER_WRITES_OFF": "Not A Namespace!"}`)
	testenv.Eventually(t, 20*time.Second, "bad document reported", func() bool {
		return counterMetric(t, "hgp_config_rejected_total") > rejected
	})
	wantCode(t, "like after a rejected document", like("article"), connect.CodeUnavailable, "switched off")

	if _, err := kv.KV().Delete(liveconfig.Key(counter.Name), nil); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "writes to article back on", func() bool { return like("article") == nil })
}

// serveBuilt runs the counter Build makes from cfg (bootstrap.Run, on a
// loopback listener) until the test ends, over a flushed test database.
func serveBuilt(t *testing.T, cfg *config.Reader) *env {
	t.Helper()
	rdb := realRedis(t)
	logger := logging.Discard()
	comp, err := counter.Build(context.Background(), logger, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	comp.Listener = ln
	run := testenv.Background(t, func(ctx context.Context) error { return bootstrap.Run(ctx, logger, comp) })
	t.Cleanup(func() { _ = run.Stop(t) })
	client := server.NewH2CClient()
	t.Cleanup(client.CloseIdleConnections)
	return &env{rdb: rdb, url: "http://" + ln.Addr().String(), http: client, signer: newSigner(t)}
}

// TestIdentitySecretRotation: a counter configured with a new secret and
// the old one in HGP_IDENTITY_SECRET_PREVIOUS accepts gateways signing with
// either, and nothing else.
func TestIdentitySecretRotation(t *testing.T) {
	newSecret := strings.Repeat("n", identity.MinSecretLen)
	e := serveBuilt(t, configFor(t, "HGP_IDENTITY_SECRET", newSecret, "HGP_IDENTITY_SECRET_PREVIOUS", secret))
	for name, key := range map[string]string{"old": secret, "new": newSecret, "unknown": strings.Repeat("u", identity.MinSecretLen)} {
		signer, err := identity.NewSigner([]byte(key))
		if err != nil {
			t.Fatal(err)
		}
		e.signer = signer
		_, err = e.counters(rpctest.Protocols[0]).Like(context.Background(), as(e, "alice", &counterv1.LikeRequest{Item: ref("article", "rot-"+name)}))
		if name == "unknown" {
			wantCode(t, "a header signed with an unknown secret", err, connect.CodeUnauthenticated, "")
			continue
		}
		if err != nil {
			t.Fatalf("a gateway signing with the %s secret: %v", name, err)
		}
	}
}

// counterMetric sums the samples of name labelled service="counter" in the
// default registry.
func counterMetric(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "service" && l.GetValue() == counter.Name {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}
