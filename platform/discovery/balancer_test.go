package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/server"
)

type fakeSource struct{ set atomic.Pointer[Set] }

func (f *fakeSource) Current() *Set { return f.set.Load() }

func (f *fakeSource) put(hosts ...string) {
	var v uint64 = 1
	if old := f.set.Load(); old != nil {
		v = old.Version + 1
	}
	s := &Set{Version: v}
	for _, h := range hosts {
		s.Instances = append(s.Instances, Instance{ID: h, URL: &url.URL{Scheme: "http", Host: h}})
	}
	f.set.Store(s)
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var connRefused = &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}

func newTestBalancer(t *testing.T, hosts ...string) (*Balancer, *fakeSource, *fakeClock) {
	t.Helper()
	src := &fakeSource{}
	src.put(hosts...)
	clk := &fakeClock{t: time.Unix(1_000_000, 0)}
	b := NewBalancer(logging.Discard(), map[string]Source{"svc": src}, withClock(clk.now), WithCooldown(5*time.Second, 30*time.Second))
	return b, src, clk
}

func pickHost(t *testing.T, b *Balancer) Backend {
	t.Helper()
	be, err := b.Pick(context.Background(), "svc")
	if err != nil {
		t.Fatalf("pick: %v", err)
	}
	return be
}

func TestPickNoInstancesAndUnknownService(t *testing.T) {
	src := &fakeSource{}
	b := NewBalancer(logging.Discard(), map[string]Source{"svc": src})
	if _, err := b.Pick(context.Background(), "svc"); !errors.Is(err, ErrNoInstances) {
		t.Fatalf("nil set: got %v, want ErrNoInstances", err)
	}
	src.put()
	if _, err := b.Pick(context.Background(), "svc"); !errors.Is(err, ErrNoInstances) {
		t.Fatalf("empty set: got %v, want ErrNoInstances", err)
	}
	if _, err := b.Pick(context.Background(), "other"); !errors.Is(err, ErrUnknownService) {
		t.Fatalf("unknown: got %v, want ErrUnknownService", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	src.put("a:1")
	if _, err := b.Pick(ctx, "svc"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ctx: got %v", err)
	}
}

func TestP2CPrefersLessLoaded(t *testing.T) {
	b, _, _ := newTestBalancer(t, "a:1", "b:1")
	// Hold 10 requests on whichever instances they land: with two instances
	// P2C always compares both, so the in-flight counts never differ by more
	// than one.
	var held []Backend
	for range 10 {
		held = append(held, pickHost(t, b))
	}
	counts := map[string]int{}
	for _, be := range held {
		counts[be.URL.Host]++
	}
	if counts["a:1"] != 5 || counts["b:1"] != 5 {
		t.Fatalf("in-flight split %v, want 5/5", counts)
	}
	// Finish all of a's requests: the next picks must go to a until equal.
	for _, be := range held {
		if be.URL.Host == "a:1" {
			be.Done(nil)
		}
	}
	for i := range 5 {
		if be := pickHost(t, b); be.URL.Host != "a:1" {
			t.Fatalf("pick %d went to %s while a had fewer in flight", i, be.URL.Host)
		}
	}
}

func TestP2CSpreadsOverManyInstances(t *testing.T) {
	hosts := []string{"a:1", "b:1", "c:1", "d:1", "e:1"}
	b, _, _ := newTestBalancer(t, hosts...)
	var held []Backend
	for range 500 {
		held = append(held, pickHost(t, b))
	}
	counts := map[string]int{}
	for _, be := range held {
		counts[be.URL.Host]++
	}
	// With P2C on in-flight counts, the spread stays tight (max-min small).
	lo, hi := 1<<30, 0
	for _, h := range hosts {
		lo, hi = min(lo, counts[h]), max(hi, counts[h])
	}
	if hi-lo > 10 {
		t.Fatalf("uneven spread %v", counts)
	}
}

func TestConnectionErrorEjectsAtOnceAndCooldownRetries(t *testing.T) {
	b, _, clk := newTestBalancer(t, "a:1", "b:1", "c:1")
	// Find a backend on b and fail it with a connection error.
	var be Backend
	for range 100 {
		be = pickHost(t, b)
		if be.URL.Host == "b:1" {
			break
		}
		be.Done(nil)
	}
	if be.URL.Host != "b:1" {
		t.Fatal("never picked b")
	}
	be.Done(fmt.Errorf("forward: %w", connect.NewError(connect.CodeUnavailable, connRefused)))
	be.Done(connRefused) // second Done is ignored
	if st := b.Stats(); st.Ejections != 1 {
		t.Fatalf("ejections %d, want 1", st.Ejections)
	}
	for range 200 {
		got := pickHost(t, b)
		got.Done(nil)
		if got.URL.Host == "b:1" {
			t.Fatal("ejected instance picked during cooldown")
		}
	}
	// After the cooldown it is retried.
	clk.advance(5*time.Second + time.Millisecond)
	seen := false
	for range 200 {
		got := pickHost(t, b)
		got.Done(nil)
		seen = seen || got.URL.Host == "b:1"
	}
	if !seen {
		t.Fatal("instance not retried after cooldown")
	}
}

func TestRepeatedFailuresDoubleCooldown(t *testing.T) {
	b, _, clk := newTestBalancer(t, "a:1", "b:1")
	failB := func() {
		t.Helper()
		for range 100 {
			be := pickHost(t, b)
			if be.URL.Host == "b:1" {
				be.Done(connRefused)
				return
			}
			be.Done(nil)
		}
		t.Fatal("never picked b")
	}
	failB()
	clk.advance(5*time.Second + time.Millisecond)
	failB() // second consecutive failure: 10s
	clk.advance(9 * time.Second)
	for range 100 {
		be := pickHost(t, b)
		be.Done(nil)
		if be.URL.Host == "b:1" {
			t.Fatal("picked b within doubled cooldown")
		}
	}
	clk.advance(time.Second + time.Millisecond)
	// Success resets the failure count.
	for range 100 {
		be := pickHost(t, b)
		if be.URL.Host == "b:1" {
			be.Done(nil)
			break
		}
		be.Done(nil)
	}
	failB()
	clk.advance(5*time.Second + time.Millisecond)
	failB() // the success reset the count: 5s, then 10s again
	if st := b.Stats(); st.Ejections != 4 {
		t.Fatalf("ejections %d, want 4", st.Ejections)
	}
}

func TestApplicationErrorsDoNotEject(t *testing.T) {
	b, _, _ := newTestBalancer(t, "a:1", "b:1")
	for range 50 {
		be := pickHost(t, b)
		be.Done(connect.NewError(connect.CodeInvalidArgument, errors.New("bad")))
	}
	if st := b.Stats(); st.Ejections != 0 {
		t.Fatalf("ejections %d after application errors", st.Ejections)
	}
}

func TestAllEjectedFallsBackToTrying(t *testing.T) {
	b, _, _ := newTestBalancer(t, "a:1", "b:1")
	for range 100 {
		be := pickHost(t, b)
		be.Done(connRefused)
		if b.Stats().Ejections == 2 {
			break
		}
	}
	if st := b.Stats(); st.Ejections != 2 {
		t.Fatalf("ejections %d, want 2", st.Ejections)
	}
	be, err := b.Pick(context.Background(), "svc")
	if err != nil {
		t.Fatalf("all ejected: want a fallback pick, got %v", err)
	}
	back := be.URL.Host
	be.Done(nil)
	fallbacks := b.Stats().Fallbacks
	if fallbacks == 0 {
		t.Fatal("fallback not counted")
	}
	// The success put that instance back in rotation: no more fallbacks, and
	// only it is picked (the other one is still ejected).
	for range 50 {
		be := pickHost(t, b)
		be.Done(nil)
		if be.URL.Host != back {
			t.Fatalf("picked %s, want the recovered %s", be.URL.Host, back)
		}
	}
	if got := b.Stats().Fallbacks; got != fallbacks {
		t.Fatalf("fallbacks went %d -> %d after recovery", fallbacks, got)
	}
}

func TestPickExcluding(t *testing.T) {
	b, _, _ := newTestBalancer(t, "a:1", "b:1", "c:1")
	for range 100 {
		be, err := b.PickExcluding(context.Background(), "svc", "a:1")
		if err != nil {
			t.Fatal(err)
		}
		be.Done(nil)
		if be.URL.Host == "a:1" {
			t.Fatal("excluded instance picked")
		}
	}
	b1, _, _ := newTestBalancer(t, "a:1")
	be, err := b1.PickExcluding(context.Background(), "svc", "a:1")
	if err != nil || be.URL.Host != "a:1" {
		t.Fatalf("single instance excluded: want it anyway, got %v %v", be.URL, err)
	}
}

func TestMembershipChangeKeepsStateAndDropsGone(t *testing.T) {
	b, src, _ := newTestBalancer(t, "a:1", "b:1")
	held := pickHost(t, b) // one in flight
	host := held.URL.Host
	src.put("a:1", "b:1", "c:1")
	counts := map[string]int{}
	var more []Backend
	for range 30 {
		be := pickHost(t, b)
		counts[be.URL.Host]++
		more = append(more, be)
	}
	if counts["c:1"] == 0 {
		t.Fatalf("new instance never picked: %v", counts)
	}
	// The in-flight count of the held request survived the rebuild.
	eps, err := b.endpoints("svc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range eps {
		want := int64(counts[e.inst.URL.Host])
		if e.inst.URL.Host == host {
			want++
		}
		if got := e.inflight.Load(); got != want {
			t.Fatalf("%s in flight %d, want %d", e.inst.URL.Host, got, want)
		}
	}
	held.Done(nil)
	for _, be := range more {
		be.Done(nil)
	}
	src.put("c:1")
	for range 50 {
		be := pickHost(t, b)
		be.Done(nil)
		if be.URL.Host != "c:1" {
			t.Fatalf("removed instance %s picked", be.URL.Host)
		}
	}
}

func TestConcurrentPicksBalanceInFlight(t *testing.T) {
	b, _, _ := newTestBalancer(t, "a:1", "b:1", "c:1")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 2000 {
				be, err := b.Pick(context.Background(), "svc")
				if err != nil {
					t.Error(err)
					return
				}
				be.Done(nil)
			}
		})
	}
	wg.Wait()
	eps, _ := b.endpoints("svc")
	for _, e := range eps {
		if n := e.inflight.Load(); n != 0 {
			t.Fatalf("%s in flight %d after all done", e.inst.URL.Host, n)
		}
	}
}

func TestIsConnectionError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	res, realErr := http.Get("http://" + addr + "/")
	if realErr == nil {
		res.Body.Close()
		t.Fatal("a closed port answered")
	}
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"refused real dial", realErr, true},
		{"refused wrapped in connect", connect.NewError(connect.CodeUnavailable, realErr), true},
		{"reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"h2 force closed", fmt.Errorf("Post \"http://x/read\": %w", errors.New("http2: client connection force closed via ClientConn.Close")), true},
		{"h2 lost", errors.New("http2: client connection lost"), true},
		{"h2 stream reset", errors.New("stream error: stream ID 3; INTERNAL_ERROR; received from peer"), false},
		{"deadline", context.DeadlineExceeded, false},
		{"application", connect.NewError(connect.CodeNotFound, errors.New("nope")), false},
	}
	for _, c := range cases {
		if got := IsConnectionError(c.err); got != c.want {
			t.Errorf("%s: IsConnectionError(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

func TestStatic(t *testing.T) {
	s, err := NewStatic("http://127.0.0.1:8081", " http://127.0.0.1:8082/ ", "")
	if err != nil {
		t.Fatal(err)
	}
	set := s.Current()
	if len(set.Instances) != 2 || set.Instances[0].URL.String() != "http://127.0.0.1:8081" || set.Instances[1].URL.String() != "http://127.0.0.1:8082" {
		t.Fatalf("static set %+v", set.Instances)
	}
	for _, bad := range [][]string{nil, {""}, {"ftp://x:1"}, {"127.0.0.1:8081"}, {"http://h:notaport"}} {
		if _, err := NewStatic(bad...); err == nil {
			t.Errorf("NewStatic(%q): want error", bad)
		}
	}
	b := NewBalancer(logging.Discard(), map[string]Source{"counter": s})
	be, err := b.Pick(context.Background(), "counter")
	if err != nil {
		t.Fatal(err)
	}
	be.Done(nil)
}

// TestKilledH2CInstanceErrorsEject: the errors an h2c client really sees
// when an instance dies — mid-request and on the next request — are
// connection errors, so the balancer ejects the instance at once.
func TestKilledH2CInstanceErrorsEject(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	hs := &http.Server{Protocols: p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
	})}
	go func() { _ = hs.Serve(ln) }()
	defer close(release)
	c := server.NewH2CClient()
	defer c.CloseIdleConnections()
	base := "http://" + ln.Addr().String()
	post := func(path string) error {
		res, err := c.Post(base+path, "application/proto", strings.NewReader("x"))
		if err == nil {
			res.Body.Close()
		}
		return err
	}
	if err := post("/fast"); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- post("/slow") }()
	<-started
	hs.Close() // the process dies with a request in flight
	inFlight := <-errc
	next := post("/fast")
	for name, err := range map[string]error{"in-flight": inFlight, "next": next} {
		if err == nil {
			t.Fatalf("%s: no error from a dead instance", name)
		}
		if !IsConnectionError(err) {
			t.Errorf("%s: %v is not classified as a connection error", name, err)
		}
	}
}

func TestInFlightSuccessDoesNotReadmitEjected(t *testing.T) {
	b, _, clk := newTestBalancer(t, "a:1", "b:1")
	// Four requests in flight: P2C on two instances splits them 2/2.
	var onB, onA []Backend
	for range 4 {
		be := pickHost(t, b)
		if be.URL.Host == "b:1" {
			onB = append(onB, be)
		} else {
			onA = append(onA, be)
		}
	}
	if len(onB) != 2 {
		t.Fatalf("split %d/%d, want 2/2", len(onA), len(onB))
	}
	for _, be := range onA {
		be.Done(nil)
	}
	clk.advance(time.Millisecond)
	onB[0].Done(connRefused) // b dies: ejected
	onB[1].Done(nil)         // a request sent before the ejection succeeds late
	for range 100 {
		be := pickHost(t, b)
		be.Done(nil)
		if be.URL.Host == "b:1" {
			t.Fatal("ejected instance readmitted by an older request's success")
		}
	}
}

// BenchmarkPick is the balancer's cost per request (Pick + Done).
func BenchmarkPick(b *testing.B) {
	src := &fakeSource{}
	src.put("a:1", "b:1", "c:1")
	bal := NewBalancer(logging.Discard(), map[string]Source{"svc": src})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			be, err := bal.Pick(context.Background(), "svc")
			if err != nil {
				b.Error(err)
				return
			}
			be.Done(nil)
		}
	})
}
