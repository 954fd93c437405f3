package server_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/grpchealth"

	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/server"
)

const svc = "highgopress.counter.v1.CounterService"

func TestHealthOverEveryProtocol(t *testing.T) {
	s := server.New(logging.Discard(), []string{svc})
	url, client := rpctest.Serve(t, s.Handler())
	for _, p := range rpctest.Protocols {
		t.Run(p.Name, func(t *testing.T) {
			hc := grpchealth.NewClient(client, url, p.Opts...)
			for _, name := range []string{"", svc} {
				st, err := hc.Check(context.Background(), &grpchealth.CheckRequest{Service: name})
				if err != nil || st.Status != grpchealth.StatusServing {
					t.Fatalf("Check(%q) = %v, %v", name, st, err)
				}
			}
			if _, err := hc.Check(context.Background(), &grpchealth.CheckRequest{Service: "nope.v1.Nope"}); err == nil {
				t.Fatal("unknown service should not be healthy")
			}
			s.SetServing(false)
			st, err := hc.Check(context.Background(), &grpchealth.CheckRequest{Service: svc})
			s.SetServing(true)
			if err != nil || st.Status != grpchealth.StatusNotServing {
				t.Fatalf("after SetServing(false): %v, %v", st, err)
			}
		})
	}
}

func TestServeShutsDownGracefully(t *testing.T) {
	s := server.New(logging.Discard(), []string{svc})
	release := make(chan struct{})
	started := make(chan struct{})
	s.Handle("/slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		w.WriteHeader(http.StatusNoContent)
	}))
	ln, err := server.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()

	respc := make(chan int, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/slow")
		if err != nil {
			respc <- -1
			return
		}
		resp.Body.Close()
		respc <- resp.StatusCode
	}()
	<-started
	cancel()
	// The in-flight request must still complete after shutdown began.
	select {
	case err := <-done:
		t.Fatalf("Serve returned %v before the in-flight request finished", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if code := <-respc; code != http.StatusNoContent {
		t.Fatalf("in-flight request got %d", code)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if res, err := http.Get("http://" + ln.Addr().String() + "/slow"); err == nil {
		res.Body.Close()
		t.Fatal("server still accepting after shutdown")
	}
}
