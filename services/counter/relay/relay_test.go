package relay_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/counter/outbox"
	"github.com/highgopress/highgopress/services/counter/relay"
)

func suffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type env struct {
	rdb     *redis.Client
	brokers []string
	topic   string
	stream  string
}

func setup(t *testing.T) env {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	brokers := strings.Split(testenv.KafkaBrokers(t), ",")
	e := env{rdb: rdb, brokers: brokers, topic: "hgp-t-" + suffix(), stream: "hgp:t:" + suffix() + ":outbox"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := events.EnsureTopic(ctx, brokers, e.topic, 3); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = rdb.Del(context.Background(), e.stream, e.stream+":dead").Err()
		client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
		_, _ = client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{e.topic}})
	})
	return e
}

// start runs a relay until the test ends and returns a function that stops
// it and waits for Run to return.
func start(t *testing.T, e env, w relay.MessageWriter, opts ...relay.Option) func() {
	t.Helper()
	r := relay.New(logging.Discard(), e.rdb, w, append([]relay.Option{relay.WithStream(e.stream), relay.WithBlock(100 * time.Millisecond), relay.WithRegisterer(nil)}, opts...)...)
	run := testenv.Background(t, r.Run)
	return func() {
		if err := run.Stop(t); err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func writer(t *testing.T, e env) *kafka.Writer {
	w := events.NewWriter(e.brokers, e.topic)
	t.Cleanup(func() { _ = w.Close() })
	return w
}

// readTopic reads n messages from every partition of the topic.
func readTopic(t *testing.T, e env, n int) []kafka.Message {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: e.brokers, Topic: e.topic, GroupID: "verify-" + suffix(), StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out []kafka.Message
	for len(out) < n {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("read topic: got %d of %d messages: %v", len(out), n, err)
		}
		out = append(out, m)
	}
	return out
}

func addEntries(t *testing.T, e env, n int) []string {
	t.Helper()
	ctx := context.Background()
	ids := make([]string, 0, n)
	for i := range n {
		var values map[string]any
		switch i % 3 {
		case 0:
			values = map[string]any{"k": "like", "u": "u" + strconv.Itoa(i%7), "ns": "article", "id": strconv.Itoa(i % 5), "d": "1", "tp": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
		case 1:
			values = map[string]any{"k": "follow", "u": "u" + strconv.Itoa(i%7), "t": "v" + strconv.Itoa(i%4), "d": "1"}
		default:
			values = map[string]any{"k": "incr", "u": "u1", "ns": "comment", "id": strconv.Itoa(i % 5), "m": "views", "d": "3", "ik": "k" + strconv.Itoa(i)}
		}
		id, err := e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: e.stream, Values: values}).Result()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func TestRelayMovesEntriesInOrder(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	ids := addEntries(t, e, 300)
	for _, bad := range []map[string]any{{"k": "explode", "u": "x"}, {"k": "like", "u": "x"}} {
		if err := e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: e.stream, Values: bad}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	start(t, e, writer(t, e))
	msgs := readTopic(t, e, len(ids))

	seen := map[string]bool{}
	lastVersion := map[string]uint64{} // per key, in partition order
	for _, m := range msgs {
		ev := &eventsv1.Event{}
		if err := proto.Unmarshal(m.Value, ev); err != nil {
			t.Fatalf("offset %d: %v", m.Offset, err)
		}
		if string(m.Key) != events.Key(ev) {
			t.Fatalf("key %q for event %v", m.Key, ev)
		}
		if m.Headers[0].Key != events.HeaderEventType || string(m.Headers[0].Value) != ev.GetKind().String() {
			t.Fatalf("headers %v for %v", m.Headers, ev.GetKind())
		}
		if ev.GetKind() == eventsv1.Kind_KIND_LIKE && (len(m.Headers) != 2 || m.Headers[1].Key != events.HeaderTraceparent) {
			t.Fatalf("like without traceparent header: %v", m.Headers)
		}
		if ev.GetVersion() <= lastVersion[string(m.Key)] {
			t.Fatalf("key %s: version %d after %d", m.Key, ev.GetVersion(), lastVersion[string(m.Key)])
		}
		lastVersion[string(m.Key)] = ev.GetVersion()
		seen[ev.GetEventId()] = true
	}
	for _, id := range ids {
		if !seen[id] {
			t.Fatalf("entry %s not relayed", id)
		}
	}
	testenv.EventuallyNoError(t, 10*time.Second, "relay condition", func() error {
		n, err := e.rdb.XLen(ctx, e.stream).Result()
		if err != nil || n != 0 {
			return fmt.Errorf("outbox length %d: %v", n, err)
		}
		dead, err := e.rdb.XRange(ctx, e.stream+":dead", "-", "+").Result()
		if err != nil || len(dead) != 2 {
			return fmt.Errorf("%d dead letters: %v", len(dead), err)
		}
		for _, d := range dead {
			if d.Values["reason"] == nil || d.Values["source_id"] == nil {
				return fmt.Errorf("dead letter without reason: %v", d.Values)
			}
		}
		return nil
	})
}

// TestRelayReclaimsEntriesOfACrashedInstance: an instance read entries and
// died before acknowledging them; another instance claims and relays them.
func TestRelayReclaimsEntriesOfACrashedInstance(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	ids := addEntries(t, e, 50)
	if err := e.rdb.XGroupCreateMkStream(ctx, e.stream, outbox.Group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	got, err := e.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: outbox.Group, Consumer: "crashed", Streams: []string{e.stream, ">"}, Count: 100, Block: -1}).Result()
	if err != nil || len(got[0].Messages) != len(ids) {
		t.Fatalf("crashed instance read: %v", err)
	}
	start(t, e, writer(t, e), relay.WithConsumerName("survivor"), relay.WithClaimIdle(300*time.Millisecond, 100*time.Millisecond))
	msgs := readTopic(t, e, len(ids))
	seen := map[string]bool{}
	for _, m := range msgs {
		ev := &eventsv1.Event{}
		if err := proto.Unmarshal(m.Value, ev); err != nil {
			t.Fatal(err)
		}
		seen[ev.GetEventId()] = true
	}
	if len(seen) != len(ids) {
		t.Fatalf("relayed %d distinct entries, want %d", len(seen), len(ids))
	}
	testenv.EventuallyNoError(t, 10*time.Second, "relay condition", func() error {
		p, err := e.rdb.XPending(ctx, e.stream, outbox.Group).Result()
		if err != nil || p.Count != 0 {
			return fmt.Errorf("pending %v: %v", p, err)
		}
		if n := e.rdb.XLen(ctx, e.stream).Val(); n != 0 {
			return fmt.Errorf("outbox length %d", n)
		}
		return nil
	})
}

// flakyWriter fails until it is allowed to succeed.
type flakyWriter struct {
	ok    atomic.Bool
	calls atomic.Int64
	mu    sync.Mutex
	got   []kafka.Message
}

func (f *flakyWriter) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	f.calls.Add(1)
	if !f.ok.Load() {
		return errors.New("broker unavailable")
	}
	f.mu.Lock()
	f.got = append(f.got, msgs...)
	f.mu.Unlock()
	return nil
}

// TestRelayKeepsEntriesUntilAcknowledged: while Kafka fails nothing leaves
// the outbox; once it recovers everything is relayed.
func TestRelayKeepsEntriesUntilAcknowledged(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	ids := addEntries(t, e, 20)
	w := &flakyWriter{}
	stop := start(t, e, w, relay.WithBackoff(5*time.Millisecond, 20*time.Millisecond))
	testenv.EventuallyNoError(t, 10*time.Second, "relay condition", func() error {
		if c := w.calls.Load(); c < 3 {
			return fmt.Errorf("%d write attempts", c)
		}
		return nil
	})
	if n := e.rdb.XLen(ctx, e.stream).Val(); n != int64(len(ids)) {
		t.Fatalf("outbox length %d while Kafka is down, want %d", n, len(ids))
	}
	w.ok.Store(true)
	testenv.EventuallyNoError(t, 10*time.Second, "relay condition", func() error {
		if n := e.rdb.XLen(ctx, e.stream).Val(); n != 0 {
			return fmt.Errorf("outbox length %d", n)
		}
		return nil
	})
	stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.got) != len(ids) {
		t.Fatalf("relayed %d messages, want %d", len(w.got), len(ids))
	}
}

// batchWriter records the size of every write.
type batchWriter struct {
	mu    sync.Mutex
	sizes []int
}

func (b *batchWriter) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sizes = append(b.sizes, len(msgs))
	return nil
}

func (b *batchWriter) written() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.sizes)
}

// TestRelayLingers: entries appended while the relay lingers after a short
// read go out in the same Kafka write.
func TestRelayLingers(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	addEntries(t, e, 3)
	w := &batchWriter{}
	start(t, e, w, relay.WithLinger(2*time.Second))
	// The relay read the three entries (they are pending) and lingers.
	testenv.EventuallyNoError(t, 10*time.Second, "the first read", func() error {
		p, err := e.rdb.XPending(ctx, e.stream, outbox.Group).Result()
		if err != nil {
			return err
		}
		if p.Count != 3 {
			return fmt.Errorf("%d pending", p.Count)
		}
		return nil
	})
	if got := w.written(); len(got) != 0 {
		t.Fatalf("written %v before the linger ended", got)
	}
	addEntries(t, e, 4)
	testenv.EventuallyNoError(t, 10*time.Second, "the outbox emptied", func() error {
		if n := e.rdb.XLen(ctx, e.stream).Val(); n != 0 {
			return fmt.Errorf("outbox length %d", n)
		}
		return nil
	})
	if got := w.written(); !slices.Equal(got, []int{7}) {
		t.Fatalf("Kafka writes of %v entries; want one of 7", got)
	}
}
