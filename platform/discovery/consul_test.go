package discovery

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/platform/testenv"
)

func uniqueService(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("disc-test-%d-%d", time.Now().UnixNano()%1e9, rand.IntN(1e6))
}

func consulClient(t *testing.T, addr string) *api.Client {
	t.Helper()
	c, err := NewClient(addr, "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// healthServer is a real service instance: platform/server's mux with
// grpchealth, served over h2c on a loopback port.
type healthServer struct {
	srv  *server.Server
	hs   *http.Server
	addr string
	port int
	done chan struct{}
}

func startHealthServer(t *testing.T) *healthServer {
	t.Helper()
	s := server.New(logging.Discard(), []string{"highgopress.test.v1.TestService"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &healthServer{srv: s, hs: s.HTTPServer(), addr: ln.Addr().String(), port: ln.Addr().(*net.TCPAddr).Port, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		_ = h.hs.Serve(ln)
	}()
	t.Cleanup(h.kill)
	return h
}

// kill closes the listener and every connection at once, like a crashed
// process: health checks then get "connection refused".
func (h *healthServer) kill() {
	_ = h.hs.Close()
	<-h.done
}

func (h *healthServer) registration(service string) Registration {
	return Registration{
		Service:     service,
		ID:          fmt.Sprintf("%s-%d", service, h.port),
		Address:     "127.0.0.1",
		Port:        h.port,
		Tags:        []string{"test"},
		HealthCheck: GRPCCheck(h.addr),
		Interval:    time.Second,
	}
}

func checkStatus(t *testing.T, c *api.Client, id string) string {
	t.Helper()
	checks, err := c.Agent().Checks()
	if err != nil {
		t.Fatalf("agent checks: %v", err)
	}
	if ch, ok := checks["service:"+id]; ok {
		return ch.Status
	}
	return ""
}

func agentHas(t *testing.T, c *api.Client, id string) bool {
	t.Helper()
	svcs, err := c.Agent().Services()
	if err != nil {
		t.Fatalf("agent services: %v", err)
	}
	_, ok := svcs[id]
	return ok
}

func runWatcher(t *testing.T, w *Watcher) {
	t.Helper()
	testenv.Background(t, w.Run)
}

func ids(w *Watcher) []string {
	var out []string
	for _, in := range w.Instances() {
		out = append(out, in.ID)
	}
	return out
}

func TestRegisterPassingAndDeregister(t *testing.T) {
	c := consulClient(t, testenv.ConsulAddr(t))
	svc := uniqueService(t)
	h := startHealthServer(t)
	reg := h.registration(svc)
	dereg, err := Register(context.Background(), logging.Discard(), c, reg)
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	t.Cleanup(func() { _ = dereg(context.Background()) })

	testenv.Eventually(t, 10*time.Second, "passing gRPC health check", func() bool {
		return checkStatus(t, c, reg.ID) == api.HealthPassing
	})
	entries, _, err := c.Health().Service(svc, "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Service.Port != h.port || entries[0].Service.Address != "127.0.0.1" ||
		!slices.Contains(entries[0].Service.Tags, "test") {
		t.Fatalf("catalog entries %+v", entries)
	}
	if dc := entries[0].Checks; len(dc) == 0 {
		t.Fatal("no checks in catalog entry")
	}

	if err := dereg(context.Background()); err != nil {
		t.Fatalf("deregister: %v", err)
	}
	if agentHas(t, c, reg.ID) {
		t.Fatal("instance still registered after deregister")
	}
	entries, _, err = c.Health().Service(svc, "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Fatalf("catalog still lists %d entries", len(entries))
	}
}

func TestRegisterRejectsBadRegistration(t *testing.T) {
	c := consulClient(t, "127.0.0.1:1")
	for _, reg := range []Registration{
		{Port: 80},
		{Service: "x", Port: 0},
		{Service: "x", Port: 80, HealthCheck: HealthCheck{GRPC: "a:1", HTTP: "http://a:1"}},
	} {
		if _, err := Register(context.Background(), logging.Discard(), c, reg); err == nil {
			t.Errorf("Register(%+v): want error", reg)
		}
	}
}

func TestRegistrationWorkerDeregistersOnShutdownAndRestoresForgotten(t *testing.T) {
	c := consulClient(t, testenv.ConsulAddr(t))
	svc := uniqueService(t)
	h := startHealthServer(t)
	reg := h.registration(svc)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- RegistrationWorker(logging.Discard(), c, reg, WithResyncInterval(200*time.Millisecond))(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("watcher: %v", err)
		}
	})
	testenv.Eventually(t, 10*time.Second, "registration", func() bool { return agentHas(t, c, reg.ID) })

	// The agent forgets the instance (what an agent restart does): it comes back.
	if err := c.Agent().ServiceDeregister(reg.ID); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "re-registration", func() bool { return agentHas(t, c, reg.ID) })
	testenv.Eventually(t, 10*time.Second, "passing check after re-registration", func() bool {
		return checkStatus(t, c, reg.ID) == api.HealthPassing
	})

	// Graceful shutdown deregisters.
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("worker: %v", err)
	}
	done <- nil // for the cleanup
	if agentHas(t, c, reg.ID) {
		t.Fatal("still registered after shutdown")
	}
}

// TestWatcherFollowsInstances: a new instance appears; a killed one is
// dropped once its health check turns critical. The window from kill to
// removal is logged (docs/discovery.md records it).
func TestWatcherFollowsInstances(t *testing.T) {
	c := consulClient(t, testenv.ConsulAddr(t))
	svc := uniqueService(t)
	w := NewWatcher(logging.Discard(), c, svc, WithWaitTime(10*time.Second))
	runWatcher(t, w)
	select {
	case <-w.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("watcher never got a first answer")
	}
	if n := len(w.Instances()); n != 0 {
		t.Fatalf("fresh service has %d instances", n)
	}

	h1, h2 := startHealthServer(t), startHealthServer(t)
	r1, r2 := h1.registration(svc), h2.registration(svc)
	for _, r := range []Registration{r1, r2} {
		d, err := Register(context.Background(), logging.Discard(), c, r)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d(context.Background()) })
	}
	appear := testenv.Eventually(t, 15*time.Second, "both instances healthy in watcher", func() bool {
		return slices.Equal(ids(w), []string{r1.ID, r2.ID}) || slices.Equal(ids(w), []string{r2.ID, r1.ID})
	})
	t.Logf("registration → healthy in watcher: %s", appear)
	for _, in := range w.Instances() {
		if in.URL == nil || in.URL.Scheme != "http" || in.URL.Host != in.HostPort() {
			t.Fatalf("instance URL %v for %+v", in.URL, in)
		}
	}

	h1.kill()
	window := testenv.Eventually(t, 15*time.Second, "killed instance dropped", func() bool {
		return slices.Equal(ids(w), []string{r2.ID})
	})
	t.Logf("FAILOVER WINDOW (check interval %s): instance killed → dropped by watcher in %s", r1.Interval, window)
	if st := w.Stats(); st.Errors != 0 || st.Stale || st.Updates < 2 {
		t.Fatalf("watcher stats %+v", st)
	}
}

func TestWatcherKeepsLastKnownWhenConsulUnreachable(t *testing.T) {
	consulAddr := testenv.ConsulAddr(t)
	direct := consulClient(t, consulAddr)
	svc := uniqueService(t)
	h := startHealthServer(t)
	reg := h.registration(svc)
	d, err := Register(context.Background(), logging.Discard(), direct, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d(context.Background()) })

	proxy := testenv.NewTCPProxy(t, "127.0.0.1:0", consulAddr)
	proxyAddr := proxy.Addr()
	w := NewWatcher(logging.Discard(), consulClient(t, proxyAddr), svc,
		WithWaitTime(5*time.Second), WithMaxBackoff(200*time.Millisecond))
	runWatcher(t, w)
	testenv.Eventually(t, 15*time.Second, "instance learned", func() bool { return slices.Equal(ids(w), []string{reg.ID}) })
	bal := NewBalancer(logging.Discard(), map[string]Source{svc: w})

	proxy.Close() // Consul unreachable from the watcher's point of view
	testenv.Eventually(t, 10*time.Second, "watcher notices Consul is unreachable", func() bool {
		st := w.Stats()
		return st.Stale && st.Errors >= 2
	})
	if got := ids(w); !slices.Equal(got, []string{reg.ID}) {
		t.Fatalf("instances while Consul unreachable: %v, want last known %v", got, []string{reg.ID})
	}
	be, err := bal.Pick(context.Background(), svc)
	if err != nil {
		t.Fatalf("pick while Consul unreachable: %v", err)
	}
	if be.URL.Host != h.addr {
		t.Fatalf("picked %s, want %s", be.URL.Host, h.addr)
	}
	be.Done(nil)

	// Consul comes back: the watcher recovers.
	testenv.NewTCPProxy(t, proxyAddr, consulAddr)
	testenv.Eventually(t, 15*time.Second, "watcher recovers", func() bool { return !w.Stats().Stale })
	if got := ids(w); !slices.Equal(got, []string{reg.ID}) {
		t.Fatalf("instances after recovery: %v", got)
	}
}

// consulBinary finds the agent built by scripts/mw.sh.
// TestAgentRestart: the agent dies (kill -9) and comes back empty. The
// watcher keeps its last known instances meanwhile; the registration loop
// restores the instance; the watcher then sees it again.
func TestAgentRestart(t *testing.T) {
	agent := testenv.StartConsulAgent(t)
	c := consulClient(t, agent.Addr())
	svc := uniqueService(t)
	h := startHealthServer(t)
	reg := h.registration(svc)
	d, err := Register(context.Background(), logging.Discard(), c, reg, WithResyncInterval(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d(context.Background()) })
	w := NewWatcher(logging.Discard(), c, svc, WithWaitTime(5*time.Second), WithMaxBackoff(300*time.Millisecond))
	runWatcher(t, w)
	testenv.Eventually(t, 15*time.Second, "instance learned", func() bool { return slices.Equal(ids(w), []string{reg.ID}) })

	agent.Kill()
	testenv.Eventually(t, 10*time.Second, "watcher notices the dead agent", func() bool { return w.Stats().Stale })
	if got := ids(w); !slices.Equal(got, []string{reg.ID}) {
		t.Fatalf("instances with agent down: %v, want last known", got)
	}
	errsBefore := w.Stats().Errors

	agent.Start(t)
	testenv.Eventually(t, 20*time.Second, "re-registered on the restarted agent", func() bool {
		svcs, err := c.Agent().Services()
		if err != nil {
			return false
		}
		_, ok := svcs[reg.ID]
		return ok
	})
	testenv.Eventually(t, 20*time.Second, "watcher sees the instance again, fresh", func() bool {
		st := w.Stats()
		return !st.Stale && slices.Equal(ids(w), []string{reg.ID})
	})
	if w.Stats().Errors < errsBefore {
		t.Fatal("error counter went backwards")
	}
}
