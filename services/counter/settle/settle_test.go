package settle_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/counter/domain"
	"github.com/highgopress/highgopress/services/counter/durable"
	"github.com/highgopress/highgopress/services/counter/outbox"
	"github.com/highgopress/highgopress/services/counter/redisstore"
	"github.com/highgopress/highgopress/services/counter/settle"
)

// testDB is the Redis database these tests own and flush.
const testDB = 12

var ctx = context.Background()

// record stands in for MySQL: what it holds and how far the consumer got.
type record struct {
	mu      sync.Mutex
	likes   map[string]domain.PairState
	applied map[int]int64
	reads   int
}

func (r *record) SettleItem(_ context.Context, _ domain.ItemRef, _ uint64) (domain.ItemSettlement, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reads++
	var st domain.ItemSettlement
	for _, p := range r.likes {
		st.Likes = append(st.Likes, p)
	}
	return st, nil
}

func (r *record) SettleUser(context.Context, string, uint64) (domain.UserSettlement, error) {
	return domain.UserSettlement{}, errors.New("no users in this test")
}

// WaitApplied does not wait: the test moves the offsets between passes.
func (r *record) WaitApplied(_ context.Context, _ string, ends map[int]int64, _ time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for p, end := range ends {
		if end > 0 && r.applied[p] < end {
			return fmt.Errorf("%w: partition %d", durable.ErrBehind, p)
		}
	}
	return nil
}

func (r *record) apply(p int, o int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applied[p] = o
}

func (r *record) readCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reads
}

// TestWorkerWaitsForOlderEvents: a rebuilt item is settled only once no
// outbox entry older than its boundary remains and the consumer applied
// everything that was in Kafka; then MySQL's state is applied to it.
func TestWorkerWaitsForOlderEvents(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t), DB: testDB, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	store := redisstore.New(logging.Discard(), rdb, redisstore.WithDurable(true), redisstore.WithSettleDelay(time.Millisecond))
	t.Cleanup(func() { _ = store.Close() })

	// An event older than the rebuild still sits in the outbox.
	older := rdb.XAdd(ctx, &redis.XAddArgs{Stream: outbox.Stream, Values: []string{"k", "like"}}).Val()
	it := domain.ItemRef{Namespace: "n", ID: "a"}
	if _, err := store.SeedItem(ctx, it, domain.ItemSnapshot{}); err != nil {
		t.Fatal(err)
	}
	rec := &record{likes: map[string]domain.PairState{"u1": {User: "u1", On: true}}, applied: map[int]int64{0: 5}}
	ends := map[int]int64{0: 5, 1: 9, 2: 0}
	w := settle.New(logging.Discard(), store, rec, func(context.Context) (map[int]int64, error) { return ends, nil }, "t",
		settle.WithInterval(20*time.Millisecond), settle.WithCatchUp(30*time.Millisecond), settle.WithRegisterer(nil))

	queued := func() int64 { return rdb.ZCard(ctx, redisstore.SettleQueue).Val() }
	// Due, but the older outbox entry holds it back.
	testenv.Eventually(t, 5*time.Second, "the rebuild is due", func() bool {
		n, err := w.Pass(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	})
	if queued() != 1 || rec.readCount() != 0 {
		t.Fatalf("settled while an older event was in the outbox (queued %d, reads %d)", queued(), rec.readCount())
	}
	// The relay moved it to Kafka: now partition 1 is behind.
	rdb.XDel(ctx, outbox.Stream, older)
	var err error
	testenv.Eventually(t, 5*time.Second, "a pass that waits for the consumer", func() bool {
		var n int
		n, err = w.Pass(ctx)
		return n == 1
	})
	if !errors.Is(err, durable.ErrBehind) || rec.readCount() != 0 || queued() != 1 {
		t.Fatalf("pass with partition 1 behind: err %v, reads %d, queued %d; want an error and nothing settled", err, rec.readCount(), queued())
	}
	// Caught up: settled, u1's like (in flight at the rebuild) is there.
	rec.apply(1, 9)
	testenv.Eventually(t, 5*time.Second, "the rebuild settled", func() bool {
		if _, err := w.Pass(ctx); err != nil {
			t.Fatal(err)
		}
		return queued() == 0
	})
	counts, liked, err := store.ReadItems(ctx, []domain.ItemRef{it}, "u1", []domain.ItemRef{it})
	if err != nil {
		t.Fatal(err)
	}
	if counts[0].Likes != 1 || !liked[0] {
		t.Fatalf("after settling: %+v, liked by u1 %v; want 1 like by u1", counts[0], liked[0])
	}
}

// TestRunStops: Run returns nil when its context ends.
func TestRunStops(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t), DB: testDB})
	t.Cleanup(func() { _ = rdb.Close() })
	store := redisstore.New(logging.Discard(), rdb)
	t.Cleanup(func() { _ = store.Close() })
	w := settle.New(logging.Discard(), store, &record{}, nil, "t", settle.WithInterval(5*time.Millisecond), settle.WithRegisterer(nil))
	c, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(c) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop")
	}
}
