package backends_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/highgopress/highgopress/platform/discovery"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/gateway/backends"
	"github.com/highgopress/highgopress/services/gateway/proxy"
)

func TestIsInstanceFailure(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{context.Canceled, false},
		{fmt.Errorf("wrapped: %w", context.DeadlineExceeded), false},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, true},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{io.ErrUnexpectedEOF, true},
		{errors.New("http2: client connection lost"), true},
		{fmt.Errorf("counter instance x: %w", errors.New("http2: client connection force closed via ClientConn.Close")), true},
		{errors.New("stream error: stream ID 3; INTERNAL_ERROR; received from peer"), false},
		// A frozen instance (no answer within the attempt timeout).
		{fmt.Errorf("counter instance x: %w (500ms)", proxy.ErrAttemptTimeout), true},
	} {
		if got := backends.IsInstanceFailure(tc.err); got != tc.want {
			t.Errorf("IsInstanceFailure(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestConsulBalancer against the real agent: instances of a service (with
// and without a tag) are learned, picked, excluded on retry; no instance
// and unknown services are ErrNoBackend.
func TestConsulBalancer(t *testing.T) {
	client, err := discovery.NewClient(testenv.ConsulAddr(t), "")
	if err != nil {
		t.Fatal(err)
	}
	svc := fmt.Sprintf("gw-backends-test-%d-%d", time.Now().UnixNano()%1e9, rand.IntN(1e6))
	const tag = "blue"
	register := func(port int, tags ...string) {
		id := fmt.Sprintf("%s-%d", svc, port)
		// No health check: the instance is passing as registered.
		if err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: id, Name: svc, Address: "127.0.0.1", Port: port, Tags: tags}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = client.Agent().ServiceDeregister(id) })
	}

	all, err := backends.NewConsul(logging.Discard(), client, []string{svc})
	if err != nil {
		t.Fatal(err)
	}
	blue, err := backends.NewConsul(logging.Discard(), client, []string{svc}, backends.WithTag(tag),
		backends.WithWatchOptions(discovery.WithWaitTime(2*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	for _, c := range []*backends.Consul{all, blue} {
		go func() { _ = c.Run(ctx); done <- struct{}{} }()
	}
	t.Cleanup(func() { cancel(); <-done; <-done })
	select {
	case <-all.Ready():
	case <-time.After(15 * time.Second):
		t.Fatal("watcher never answered")
	}
	if _, err := all.Pick(ctx, svc); !errors.Is(err, proxy.ErrNoBackend) || !errors.Is(err, discovery.ErrNoInstances) {
		t.Fatalf("Pick with no instance: %v", err)
	}
	if _, err := all.Pick(ctx, "not-watched"); !errors.Is(err, proxy.ErrNoBackend) {
		t.Fatalf("Pick of an unknown service: %v", err)
	}

	register(40001)
	register(40002, tag)
	testenv.Eventually(t, 15*time.Second, "both instances", func() bool {
		return slices.Equal(all.Instances(svc), []string{"127.0.0.1:40001", "127.0.0.1:40002"})
	})
	testenv.Eventually(t, 15*time.Second, "the tagged instance", func() bool { return slices.Equal(blue.Instances(svc), []string{"127.0.0.1:40002"}) })

	for range 20 {
		b, err := blue.Pick(ctx, svc)
		if err != nil || b.URL.String() != "http://127.0.0.1:40002" {
			t.Fatalf("tagged Pick = %v, %v", b.URL, err)
		}
		b.Done(nil)
		b, err = all.PickExcluding(ctx, svc, "127.0.0.1:40001")
		if err != nil || b.URL.Host != "127.0.0.1:40002" {
			t.Fatalf("PickExcluding = %v, %v", b.URL, err)
		}
		b.Done(nil)
	}
	// A connection failure ejects the instance at once.
	b, err := all.PickExcluding(ctx, svc, "127.0.0.1:40002")
	if err != nil || b.URL.Host != "127.0.0.1:40001" {
		t.Fatalf("PickExcluding = %v, %v", b.URL, err)
	}
	b.Done(errors.New("http2: client connection lost"))
	for range 20 {
		b, err := all.Pick(ctx, svc)
		if err != nil || b.URL.Host != "127.0.0.1:40002" {
			t.Fatalf("Pick after ejection = %v, %v", b.URL, err)
		}
		b.Done(nil)
	}
	st := all.Stats()
	if st.Balancer.Ejections != 1 || len(st.Watchers) != 1 || st.Watchers[0].Instances != 2 || st.Watchers[0].Stale {
		t.Fatalf("stats %+v", st)
	}
}
