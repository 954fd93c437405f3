package discovery

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/highgopress/highgopress/platform/logging"
)

// TestOnEjectIsCalledOncePerEjection: two requests in flight failing
// together eject their instance once; a failure after the cooldown is a
// new ejection.
func TestOnEjectIsCalledOncePerEjection(t *testing.T) {
	src := &fakeSource{}
	src.put("a:1")
	clk := &fakeClock{t: time.Unix(1_000_000, 0)}
	var mu sync.Mutex
	got := map[string]int{}
	b := NewBalancer(logging.Discard(), map[string]Source{"svc": src}, withClock(clk.now),
		WithOnEject(func(s string) { mu.Lock(); got[s]++; mu.Unlock() }))
	one, _ := b.Pick(context.Background(), "svc")
	two, _ := b.Pick(context.Background(), "svc")
	one.Done(connRefused)
	two.Done(connRefused)
	if got["svc"] != 1 {
		t.Fatalf("ejections reported %v after two failures in flight together; want svc once", got)
	}
	clk.advance(time.Minute)
	three, _ := b.Pick(context.Background(), "svc")
	three.Done(connRefused)
	if got["svc"] != 2 {
		t.Fatalf("ejections reported %v after a failure past the cooldown; want svc twice", got)
	}
}
