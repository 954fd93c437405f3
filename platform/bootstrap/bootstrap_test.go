package bootstrap

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/platform/testenv"
)

func component(t *testing.T, name string, closed *[]string, mu *sync.Mutex) *Component {
	t.Helper()
	ln, err := server.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := server.New(logging.Discard(), nil)
	s.Handle("/ping", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	return &Component{
		Name: name, Server: s, Listener: ln,
		Close: func() error {
			mu.Lock()
			*closed = append(*closed, name)
			mu.Unlock()
			return nil
		},
	}
}

func waitServing(t *testing.T, c *Component) {
	t.Helper()
	testenv.EventuallyNoError(t, 5*time.Second, c.Name+" serving", func() error {
		resp, err := http.Get("http://" + c.Listener.Addr().String() + "/ping")
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
}

func TestRunStopsEverythingOnCancelAndClosesInReverse(t *testing.T) {
	var mu sync.Mutex
	var closed []string
	a, b := component(t, "a", &closed, &mu), component(t, "b", &closed, &mu)
	workerStopped := make(chan struct{})
	b.Workers = []func(context.Context) error{func(ctx context.Context) error {
		<-ctx.Done()
		close(workerStopped)
		return ctx.Err()
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, logging.Discard(), a, b) }()
	waitServing(t, a)
	waitServing(t, b)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil after cancel", err)
	}
	<-workerStopped
	if strings.Join(closed, ",") != "b,a" {
		t.Fatalf("closed %v, want b,a", closed)
	}
}

func TestRunStopsWhenAWorkerFails(t *testing.T) {
	var mu sync.Mutex
	var closed []string
	a := component(t, "a", &closed, &mu)
	boom := errors.New("boom")
	a.Workers = []func(context.Context) error{func(context.Context) error { return boom }}
	done := make(chan error, 1)
	go func() { done <- Run(context.Background(), logging.Discard(), a) }()
	select {
	case err := <-done:
		if !errors.Is(err, boom) {
			t.Fatalf("Run = %v, want boom", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop after a worker failed")
	}
	if len(closed) != 1 {
		t.Fatalf("Close not called: %v", closed)
	}
}

func TestRunReportsListenErrors(t *testing.T) {
	taken, err := server.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	c := &Component{Name: "x", Addr: taken.Addr().String(), Server: server.New(logging.Discard(), nil)}
	err = Run(context.Background(), logging.Discard(), c)
	if err == nil || !strings.Contains(err.Error(), taken.Addr().String()) {
		t.Fatalf("Run = %v, want an error naming the address", err)
	}
}

func TestMetricsComponentServesPrometheusText(t *testing.T) {
	c := MetricsComponent(logging.Discard(), "127.0.0.1:0", true)
	ln, err := server.Listen(c.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Listener = ln
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, logging.Discard(), c) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf strings.Builder
	_, _ = io.Copy(&buf, resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(buf.String(), "go_goroutines") {
		t.Fatalf("GET /metrics: %d %.200s", resp.StatusCode, buf.String())
	}
	// With profiling on, the goroutine profile is there too.
	resp, err = http.Get("http://" + ln.Addr().String() + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf.Reset()
	_, _ = io.Copy(&buf, resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(buf.String(), "goroutine profile") {
		t.Fatalf("GET /debug/pprof/goroutine: %d %.200s", resp.StatusCode, buf.String())
	}
}

// TestMetricsComponentHidesProfilesByDefault: without HGP_PPROF there are
// no profiles on the metrics port.
func TestMetricsComponentHidesProfilesByDefault(t *testing.T) {
	c := MetricsComponent(logging.Discard(), "127.0.0.1:0", false)
	ln, err := server.Listen(c.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Listener = ln
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, logging.Discard(), c) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	resp, err := http.Get("http://" + ln.Addr().String() + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /debug/pprof/ without profiling: %d; want 404", resp.StatusCode)
	}
}
