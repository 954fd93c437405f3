package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/platform/identity"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/platform/testenv/pipetest"
	"github.com/highgopress/highgopress/services/counter"
	"github.com/highgopress/highgopress/services/counter/domain"
	"github.com/highgopress/highgopress/services/counter/outbox"
	"github.com/highgopress/highgopress/services/counter/redisstore"
	"github.com/highgopress/highgopress/services/counter/relay"
)

// redisCluster starts a private redis-cluster (3 masters + 3 replicas)
// through scripts/mw.sh and returns it with a cluster client configured as
// counter.Build configures its own (no retries, 1 s budgets).
func redisCluster(t *testing.T) (*cluster, *redis.ClusterClient) {
	t.Helper()
	c := newCluster(t, "redis-cluster", "HGP_MW_REDIS_CLUSTER_PORT", func(b int) []int {
		var p []int
		for i := 1; i <= 6; i++ {
			p = append(p, b+i, b+10+i)
		}
		return p
	}, false)
	t.Cleanup(func() { c.stop(t) })
	took, err := c.do(t, "start")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("redis-cluster up (3 masters + 3 replicas) after %s", took.Round(time.Millisecond))
	var addrs []string
	for i := 1; i <= 6; i++ {
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(c.base+i))
	}
	rdb := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs: addrs, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
		PoolTimeout: time.Second, ContextTimeoutEnabled: true, PoolSize: 20 + redisstore.ClusterShards + 1,
	})
	t.Cleanup(func() { _ = rdb.Close() })
	return c, rdb
}

// clusterCounter is a counter in the cluster layout on rdb.
func clusterCounter(t *testing.T, rdb redis.UniversalClient) *counter.Counter {
	t.Helper()
	signer, err := identity.NewSigner([]byte(strings.Repeat("s", 32)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := counter.New(slog.New(slog.NewTextHandler(io.Discard, nil)), rdb, signer,
		counter.WithCluster(true), counter.WithCacheTTL(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// outboxLen is the number of entries in every shard stream and hgp:outbox.
func outboxLen(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
	pipe := rdb.Pipeline()
	var cmds []*redis.IntCmd
	for _, st := range append(redisstore.ClusterOutboxStreams(), outbox.Stream) {
		cmds = append(cmds, pipe.XLen(ctx, st))
	}
	_, _ = pipe.Exec(ctx)
	var n int64
	for _, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return 0, err
		}
		n += c.Val()
	}
	return n, nil
}

// TestRedisClusterLikesAndRelay: likes and unlikes on a real Redis Cluster
// are exact under concurrency (each like sent twice at once: changed=true
// once per pair), GetCounts across items of every master agrees, each
// state change left one entry in its item's shard stream, and the relays
// (one per shard plus hgp:outbox, which also holds an entry written as a
// single Redis would have) move all of them to Kafka and empty the
// streams. Follows are refused with ErrUnsupported, nothing written.
func TestRedisClusterLikesAndRelay(t *testing.T) {
	_, rdb := redisCluster(t)
	c := clusterCounter(t, rdb)
	svc := c.App()
	ctx := context.Background()
	ns := "rc" + strings.ToLower(pipetest.Suffix())
	if len(ns) > 32 {
		ns = ns[:32]
	}
	const users, items = 30, 40
	refs := make([]domain.ItemRef, items)
	shards := map[int]bool{}
	for i := range refs {
		refs[i] = domain.ItemRef{Namespace: ns, ID: "i" + strconv.Itoa(i)}
		shards[redisstore.ClusterShard(refs[i])] = true
	}
	var changed, failed atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for u := range users {
		for i := range items {
			for range 2 {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					r, err := svc.Like(ctx, "u"+strconv.Itoa(u), refs[i])
					if err != nil {
						failed.Add(1)
						t.Errorf("like: %v", err)
						return
					}
					if r.Changed {
						changed.Add(1)
					}
				}()
			}
		}
	}
	wg.Wait()
	if changed.Load() != users*items || failed.Load() != 0 {
		t.Fatalf("changed=true %d times, want %d (%d failed)", changed.Load(), users*items, failed.Load())
	}
	// the first 10 users unlike item 0..9 once each
	for u := range 10 {
		if r, err := svc.Unlike(ctx, "u"+strconv.Itoa(u), refs[u]); err != nil || !r.Changed {
			t.Fatalf("unlike: %+v %v", r, err)
		}
	}
	views, err := svc.GetCounts(ctx, "u0", refs)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range views {
		want := int64(users)
		if i < 10 {
			want--
		}
		if v.Counts.Likes != want || v.ViewerLiked != (i != 0) {
			t.Fatalf("item %d: %+v, want %d likes", i, v, want)
		}
	}
	n, err := outboxLen(ctx, rdb)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(users*items + 10); n != want {
		t.Fatalf("outbox shards hold %d entries, want %d", n, want)
	}
	if _, err := svc.Follow(ctx, "u1", "u2"); !errors.Is(err, domain.ErrUnsupported) {
		t.Fatalf("follow on a cluster: %v, want ErrUnsupported", err)
	}
	// an entry a single Redis left in hgp:outbox before it became a cluster node
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: outbox.Stream, Values: []any{"k", "like", "u", "old", "ns", ns, "id", "legacy", "d", "1"}}).Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d items over %d of %d shards; %d outbox entries + 1 in hgp:outbox", items, len(shards), redisstore.ClusterShards, n)

	brokers := strings.Split(testenv.KafkaBrokers(t), ",")
	topic := pipetest.Topic(t, brokers, 3)
	w := events.NewWriter(brokers, topic)
	t.Cleanup(func() { _ = w.Close() })
	rctx, stop := context.WithCancel(ctx)
	var rw sync.WaitGroup
	t0 := time.Now()
	for _, st := range append(redisstore.ClusterOutboxStreams(), outbox.Stream) {
		rl := relay.New(slog.New(slog.NewTextHandler(io.Discard, nil)), rdb, w, relay.WithStream(st),
			relay.WithConsumerName("t-"+pipetest.Suffix()), relay.WithRegisterer(nil))
		rw.Go(func() { _ = rl.Run(rctx) })
	}
	defer func() { stop(); rw.Wait() }()
	want := n + 1
	pipetest.Eventually(t, 60*time.Second, func() error {
		left, err := outboxLen(ctx, rdb)
		if err != nil {
			return err
		}
		ends, err := events.EndOffsets(ctx, brokers, topic)
		if err != nil {
			return err
		}
		var sum int64
		for _, e := range ends {
			sum += e
		}
		if left != 0 || sum != want {
			return fmt.Errorf("outbox %d left, topic holds %d of %d", left, sum, want)
		}
		return nil
	})
	t.Logf("RESULT relay drained %d entries from %d shard streams + hgp:outbox in %s", want, redisstore.ClusterShards, time.Since(t0).Round(time.Millisecond))
}
