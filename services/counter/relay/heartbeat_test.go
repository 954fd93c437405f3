package relay_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"

	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/counter/outbox"
	"github.com/highgopress/highgopress/services/counter/relay"
)

// blockingWriter never acknowledges: the relay's entries stay pending.
type blockingWriter struct{}

func (blockingWriter) WriteMessages(ctx context.Context, _ ...kafka.Message) error {
	<-ctx.Done()
	return ctx.Err()
}

// pendingOf returns how many entries consumer holds pending.
func pendingOf(t *testing.T, e env, consumer string) int {
	t.Helper()
	p, err := e.rdb.XPendingExt(context.Background(), &redis.XPendingExtArgs{
		Stream: e.stream, Group: outbox.Group, Start: "-", End: "+", Count: 10_000, Consumer: consumer,
	}).Result()
	if err != nil {
		t.Fatalf("XPENDING: %v", err)
	}
	return len(p)
}

// TestRelayClaimsDeadRelaysSoon: the entries of a relay that read them and
// died (no liveness key) are taken over within a few heartbeat lifetimes,
// although the claim idle time (the older fallback) is far away.
func TestRelayClaimsDeadRelaysSoon(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	ids := addEntries(t, e, 40)
	if err := e.rdb.XGroupCreateMkStream(ctx, e.stream, outbox.Group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: outbox.Group, Consumer: "dead", Streams: []string{e.stream, ">"}, Count: 100, Block: -1}).Err(); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	start(t, e, writer(t, e), relay.WithConsumerName("survivor"),
		relay.WithHeartbeat(time.Second), relay.WithClaimIdle(time.Hour, time.Hour))
	msgs := readTopic(t, e, len(ids))
	took := time.Since(began)
	if took > 15*time.Second {
		t.Fatalf("a dead relay's entries were relayed after %s; want a few heartbeat lifetimes (1s)", took)
	}
	if got := distinctEvents(t, msgs); got != len(ids) {
		t.Fatalf("relayed %d distinct entries; want %d", got, len(ids))
	}
	t.Logf("dead relay's %d entries relayed %s after the survivor started", len(ids), took)
	testenv.EventuallyNoError(t, 10*time.Second, "the outbox to drain", func() error {
		if n := pendingOf(t, e, "dead"); n != 0 {
			return fmt.Errorf("%d entries still pending for the dead relay", n)
		}
		if n := e.rdb.XLen(ctx, e.stream).Val(); n != 0 {
			return fmt.Errorf("outbox length %d", n)
		}
		return nil
	})
}

// TestRelayLeavesLiveRelaysAlone: a live relay whose Kafka writes hang
// keeps its entries pending (its liveness key is refreshed); another relay
// with a short heartbeat never takes them, however long they wait. When the
// live relay stops, it deletes its key and the other relays them at once.
func TestRelayLeavesLiveRelaysAlone(t *testing.T) {
	e := setup(t)
	ids := addEntries(t, e, 30)
	if err := e.rdb.XGroupCreateMkStream(context.Background(), e.stream, outbox.Group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	// At least the 1 s HGP_RELAY_HEARTBEAT_TTL allows: shorter would let a
	// live relay on a busy machine look dead, which is not what this test
	// is about.
	const ttl = 1500 * time.Millisecond
	stopLive := start(t, e, blockingWriter{}, relay.WithConsumerName("live"), relay.WithHeartbeat(ttl), relay.WithClaimIdle(time.Hour, time.Hour))
	testenv.Eventually(t, 30*time.Second, "the live relay to hold every entry", func() bool { return pendingOf(t, e, "live") == len(ids) })
	start(t, e, writer(t, e), relay.WithConsumerName("other"), relay.WithHeartbeat(ttl), relay.WithClaimIdle(time.Hour, time.Hour))
	// Six heartbeat lifetimes: the other relay looks for dead relays
	// every half of one, so it had 12 chances to take the entries. The
	// live relay's holdings are sampled every 20 ms of that window.
	watch := time.NewTimer(6 * ttl)
	defer watch.Stop()
	sample := time.NewTicker(20 * time.Millisecond)
	defer sample.Stop()
observe:
	for {
		if n := pendingOf(t, e, "live"); n != len(ids) {
			t.Fatalf("the live relay holds %d of its %d entries: the others were taken", n, len(ids))
		}
		select {
		case <-watch.C:
			break observe
		case <-sample.C:
		}
	}
	// A clean stop deletes the liveness key: the entries move at once.
	stopLive()
	if n, err := e.rdb.Exists(context.Background(), relay.HeartbeatKey(e.stream, "live")).Result(); err != nil || n != 0 {
		t.Fatalf("liveness key after a clean stop: %d, %v; want gone", n, err)
	}
	msgs := readTopic(t, e, len(ids))
	if got := distinctEvents(t, msgs); got != len(ids) || len(msgs) != len(ids) {
		t.Fatalf("relayed %d messages, %d distinct; want %d each", len(msgs), got, len(ids))
	}
}

// distinctEvents returns the number of distinct event ids in msgs.
func distinctEvents(t *testing.T, msgs []kafka.Message) int {
	t.Helper()
	seen := map[string]bool{}
	for _, m := range msgs {
		ev := &eventsv1.Event{}
		if err := proto.Unmarshal(m.Value, ev); err != nil {
			t.Fatal(err)
		}
		seen[ev.GetEventId()] = true
	}
	return len(seen)
}

// TestStoppingRelayLeavesANewerKeyAlone: a relay deletes its liveness key on
// a clean stop only while the key is still its own — when a restarted
// instance of the same name already wrote its key, the late stop of the old
// run must not make the new one look dead.
func TestStoppingRelayLeavesANewerKeyAlone(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	key := relay.HeartbeatKey(e.stream, "same-name")
	stop := start(t, e, blockingWriter{}, relay.WithConsumerName("same-name"), relay.WithHeartbeat(time.Hour))
	testenv.Eventually(t, 30*time.Second, "the relay's liveness key", func() bool { return e.rdb.Exists(ctx, key).Val() == 1 })
	// The restarted instance takes the name back (its own token).
	if err := e.rdb.Set(ctx, key, "newer-run", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	stop()
	if v, err := e.rdb.Get(ctx, key).Result(); err != nil || v != "newer-run" {
		t.Fatalf("liveness key after the old run stopped: %q, %v; want the newer run's", v, err)
	}
	// A run that still owns its key removes it.
	e.rdb.Del(ctx, key)
	stop = start(t, e, blockingWriter{}, relay.WithConsumerName("same-name"), relay.WithHeartbeat(time.Hour))
	testenv.Eventually(t, 30*time.Second, "the relay's liveness key", func() bool { return e.rdb.Exists(ctx, key).Val() == 1 })
	stop()
	if n := e.rdb.Exists(ctx, key).Val(); n != 0 {
		t.Fatalf("liveness key still there after a clean stop of its owner")
	}
}
