package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/highgopress/highgopress/services/gateway/proxy"
)

func urls(t *testing.T, raw ...string) []*url.URL {
	t.Helper()
	u, err := proxy.ParseBackendURLs(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestRoundRobinTakesTurns(t *testing.T) {
	rr, err := proxy.NewRoundRobin(map[string][]*url.URL{"counter": urls(t, "http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3")})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for range 300 {
		b, err := rr.Pick(context.Background(), "counter")
		if err != nil {
			t.Fatal(err)
		}
		seen[b.URL.Host]++
		b.Done(nil)
	}
	if len(seen) != 3 || seen["127.0.0.1:1"] != 100 || seen["127.0.0.1:2"] != 100 {
		t.Fatalf("distribution %v", seen)
	}
	if _, err := rr.Pick(context.Background(), "other"); !errors.Is(err, proxy.ErrNoBackend) {
		t.Fatalf("unknown service: %v", err)
	}
}

func TestRoundRobinConcurrent(t *testing.T) {
	rr, err := proxy.NewRoundRobin(map[string][]*url.URL{"counter": urls(t, "http://127.0.0.1:1", "http://127.0.0.1:2")})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[string]int{}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				b, err := rr.Pick(context.Background(), "counter")
				if err != nil {
					t.Error(err)
					return
				}
				b.Done(nil)
				mu.Lock()
				seen[b.URL.Host]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if seen["127.0.0.1:1"] != 400 || seen["127.0.0.1:2"] != 400 {
		t.Fatalf("distribution %v", seen)
	}
}

func TestRoundRobinSkipsRefusingInstance(t *testing.T) {
	now := time.Unix(1000, 0)
	rr, err := proxy.NewRoundRobin(
		map[string][]*url.URL{"counter": urls(t, "http://127.0.0.1:1", "http://127.0.0.1:2")},
		proxy.WithCooldown(5*time.Second), proxy.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	pick := func() proxy.Backend {
		b, err := rr.Pick(context.Background(), "counter")
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	first := pick()
	first.Done(refused)
	for range 4 {
		b := pick()
		if b.URL.Host == first.URL.Host {
			t.Fatalf("picked %s during its cooldown", b.URL.Host)
		}
		b.Done(nil)
	}
	// Other errors (the backend answered, or a reset mid-request) do not
	// eject.
	other := pick()
	other.Done(errors.New("stream reset"))
	if b := pick(); b.URL.Host != other.URL.Host {
		t.Fatalf("picked %s; %s must stay in rotation", b.URL.Host, other.URL.Host)
	}

	// Everyone down: still pick someone rather than fail.
	other.Done(refused)
	if b, err := rr.Pick(context.Background(), "counter"); err != nil || b.URL == nil {
		t.Fatalf("all down: %v, %v", b, err)
	}
	now = now.Add(6 * time.Second)
	seen := map[string]bool{}
	for range 4 {
		seen[pick().URL.Host] = true
	}
	if len(seen) != 2 {
		t.Fatalf("after the cooldown picks %v, want both", seen)
	}
}

func TestParseBackendURLs(t *testing.T) {
	if _, err := proxy.ParseBackendURLs([]string{"http://127.0.0.1:8081", "http://counter:8081/"}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]string{
		nil,
		{"127.0.0.1:8081"},
		{"https://127.0.0.1:8081"},
		{"http://127.0.0.1"},
		{"http://127.0.0.1:8081/prefix"},
		{"http://u:p@127.0.0.1:8081"},
		{"http://127.0.0.1:8081?x=1"},
		{"http://:8081"},
		{"http://%zz"},
	} {
		if _, err := proxy.ParseBackendURLs(bad); err == nil {
			t.Errorf("ParseBackendURLs(%q) succeeded", bad)
		}
	}
	if _, err := proxy.NewRoundRobin(map[string][]*url.URL{"counter": nil}); err == nil {
		t.Error("NewRoundRobin with no instances succeeded")
	}
}

// TestRoundRobinSkipsStalledInstance: an instance that did not answer
// within the attempt timeout (a frozen process) is skipped for the
// cooldown like one that refused the connection.
func TestRoundRobinSkipsStalledInstance(t *testing.T) {
	now := time.Unix(1000, 0)
	rr, err := proxy.NewRoundRobin(
		map[string][]*url.URL{"counter": urls(t, "http://127.0.0.1:1", "http://127.0.0.1:2")},
		proxy.WithCooldown(5*time.Second), proxy.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	first, err := rr.Pick(context.Background(), "counter")
	if err != nil {
		t.Fatal(err)
	}
	first.Done(fmt.Errorf("counter instance %s: %w (500ms)", first.URL.Host, proxy.ErrAttemptTimeout))
	for range 4 {
		b, err := rr.Pick(context.Background(), "counter")
		if err != nil {
			t.Fatal(err)
		}
		if b.URL.Host == first.URL.Host {
			t.Fatalf("picked the stalled instance %s during its cooldown", b.URL.Host)
		}
		b.Done(nil)
	}
}
