package relay_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/counter/outbox"
	"github.com/highgopress/highgopress/services/counter/relay"
)

// TestRelayOnMiniredis is a fast check that the relay's commands (group
// creation, XREADGROUP, XAUTOCLAIM, MULTI with XACK/XDEL) work on the
// in-process Redis the standalone mode uses.
func TestRelayOnMiniredis(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	for i := range 10 {
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: outbox.Stream, Values: map[string]any{"k": "like", "u": fmt.Sprint("u", i), "ns": "a", "id": "1", "d": "1"}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: outbox.Stream, Values: map[string]any{"k": "bogus", "u": "x"}}).Err(); err != nil {
		t.Fatal(err)
	}
	w := &flakyWriter{}
	w.ok.Store(true)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	r := relay.New(logging.Discard(), rdb, w, relay.WithRegisterer(nil), relay.WithBlock(50*time.Millisecond))
	go func() { done <- r.Run(rctx) }()
	testenv.EventuallyNoError(t, 10*time.Second, "relay condition", func() error {
		if n := rdb.XLen(ctx, outbox.Stream).Val(); n != 0 {
			return fmt.Errorf("outbox length %d", n)
		}
		if n := rdb.XLen(ctx, outbox.Stream+":dead").Val(); n != 1 {
			return fmt.Errorf("%d dead letters", n)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.got) != 10 {
		t.Fatalf("relayed %d messages, want 10", len(w.got))
	}
}
