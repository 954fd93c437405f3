package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
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

// TestRedisClusterMasterKilled: a closed-loop load of fresh likes (every
// acknowledged like a new (user, item) pair) on a real cluster; after 1,000
// acknowledged likes the master of node 1 is killed with SIGKILL. Its
// replica must take its slots over; the load continues until 1,000 more
// likes were acknowledged after the promotion. Then every acknowledged
// like must be in its likers set (else it is lost: replication is
// asynchronous) and every item's count must equal its likers set (drift).
// Client errors between the kill and the promotion are counted. It fails
// when no replica is promoted within 60 s, when the load cannot write
// after the promotion, or when a count differs from its set. The number of
// acknowledged likes lost is reported (RESULT), not asserted: Redis does
// not promise it is zero.
func TestRedisClusterMasterKilled(t *testing.T) {
	// go-redis logs every refused dial to the dead node on its own logger
	redis.SetLogger(quietRedis{})
	c, rdb := redisCluster(t)
	cnt := clusterCounter(t, rdb)
	svc := cnt.App()
	ctx := context.Background()
	ns := "rk" + strings.ToLower(pipetest.Suffix())
	if len(ns) > 32 {
		ns = ns[:32]
	}
	const workers, items = 16, 200
	type pair struct{ u, i int }
	var (
		mu       sync.Mutex
		acked    []pair
		errs     atomic.Int64
		ackCount atomic.Int64
		lastErr  atomic.Value
	)
	item := func(i int) domain.ItemRef { return domain.ItemRef{Namespace: ns, ID: "i" + strconv.Itoa(i)} }
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				u, i := w*100000+k/items, k%items
				r, err := svc.Like(ctx, "u"+strconv.Itoa(u), item(i))
				if err != nil {
					errs.Add(1)
					lastErr.Store(err.Error())
					continue
				}
				if r.Changed {
					mu.Lock()
					acked = append(acked, pair{u, i})
					mu.Unlock()
					ackCount.Add(1)
				}
			}
		})
	}
	stopped := false
	defer func() {
		if !stopped {
			close(stop)
			wg.Wait()
		}
	}()
	poll(t, 60*time.Second, 50*time.Millisecond, "1,000 acknowledged likes", func() error {
		if n := ackCount.Load(); n < 1000 {
			return fmt.Errorf("%d acknowledged", n)
		}
		return nil
	})
	node1 := "127.0.0.1:" + strconv.Itoa(c.base+1)
	errsAtKill := errs.Load()
	killAt := time.Now()
	c.kill9(t, "1")
	// promoted: node 2 sees slot 0 served by a master other than node 1
	n2 := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(c.base+2), MaxRetries: -1})
	defer n2.Close()
	var promoted string
	poll(t, 60*time.Second, 50*time.Millisecond, "a replica of node 1 promoted", func() error {
		shards, err := n2.ClusterShards(ctx).Result()
		if err != nil {
			return err
		}
		for _, sh := range shards {
			if len(sh.Slots) == 0 || sh.Slots[0].Start != 0 {
				continue
			}
			for _, n := range sh.Nodes {
				addr := "127.0.0.1:" + strconv.FormatInt(n.Port, 10)
				if n.Role == "master" && n.Health == "online" && addr != node1 {
					promoted = addr
					return nil
				}
			}
		}
		return errors.New("slot 0 still on node 1")
	})
	promotion := time.Since(killAt)
	errsAtPromotion := errs.Load()
	ackAtPromotion := ackCount.Load()
	firstAfter := poll(t, 60*time.Second, 20*time.Millisecond, "1,000 likes acknowledged after the promotion", func() error {
		if n := ackCount.Load() - ackAtPromotion; n < 1000 {
			return fmt.Errorf("%d acknowledged since the promotion, %d errors (last %v)", n, errs.Load()-errsAtPromotion, lastErr.Load())
		}
		return nil
	})
	close(stop)
	wg.Wait()
	stopped = true

	// compare: every acknowledged like in its set; every count equal to its set
	pipe := rdb.Pipeline()
	members := make([]*redis.BoolCmd, len(acked))
	for k, p := range acked {
		members[k] = pipe.SIsMember(ctx, "hgp:lk:{s"+strconv.Itoa(redisstore.ClusterShard(item(p.i)))+"}"+ns+":i"+strconv.Itoa(p.i), "u"+strconv.Itoa(p.u))
	}
	cards, likes := make([]*redis.IntCmd, items), make([]*redis.StringCmd, items)
	for i := range items {
		tag := "{s" + strconv.Itoa(redisstore.ClusterShard(item(i))) + "}" + ns + ":i" + strconv.Itoa(i)
		cards[i] = pipe.SCard(ctx, "hgp:lk:"+tag)
		likes[i] = pipe.HGet(ctx, "hgp:c:"+tag, "likes")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	lost := 0
	for _, m := range members {
		if !m.Val() {
			lost++
		}
	}
	drift := 0
	for i := range items {
		l, _ := strconv.ParseInt(likes[i].Val(), 10, 64)
		if l != cards[i].Val() {
			drift++
			t.Errorf("item %d: likes %d, likers set %d", i, l, cards[i].Val())
		}
	}
	t.Logf("RESULT redis master SIGKILL: acked %d, lost %d, count drift %d items, client errors %d (%d between kill and promotion; last %v), "+
		"promoted %s after %s, 1,000 more likes acknowledged %s after the promotion",
		len(acked), lost, drift, errs.Load(), errsAtPromotion-errsAtKill, lastErr.Load(), promoted,
		promotion.Round(time.Millisecond), firstAfter.Round(time.Millisecond))
}

// TestRedisClusterWaitCost measures what WAIT 1 (one replica acknowledged
// the write before the client is answered) costs a like on the cluster: the
// like script and WAIT in one pipeline on the item's master, 400 times, p50
// and p99 against the same without WAIT. Reported, not asserted.
func TestRedisClusterWaitCost(t *testing.T) {
	_, rdb := redisCluster(t)
	cnt := clusterCounter(t, rdb)
	_ = cnt
	ctx := context.Background()
	ns := "rw" + strings.ToLower(pipetest.Suffix())
	if len(ns) > 32 {
		ns = ns[:32]
	}
	it := domain.ItemRef{Namespace: ns, ID: "w"}
	tag := "{s" + strconv.Itoa(redisstore.ClusterShard(it)) + "}" + ns + ":w"
	master, err := rdb.MasterForKey(ctx, "hgp:c:"+tag)
	if err != nil {
		t.Fatal(err)
	}
	run := func(wait bool) (p50, p99 time.Duration, acked int64) {
		lat := make([]time.Duration, 0, 400)
		for k := range 400 {
			t0 := time.Now()
			pipe := master.Pipeline()
			pipe.SAdd(ctx, "hgp:lk:"+tag, "u"+strconv.FormatBool(wait)+strconv.Itoa(k))
			pipe.HIncrBy(ctx, "hgp:c:"+tag, "likes", 1)
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: "hgp:outbox:{s" + strconv.Itoa(redisstore.ClusterShard(it)) + "}", Values: []any{"k", "like"}})
			var w *redis.IntCmd
			if wait {
				w = redis.NewIntCmd(ctx, "wait", 1, 100)
				_ = pipe.Process(ctx, w)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				t.Fatal(err)
			}
			if w != nil {
				acked += w.Val()
			}
			lat = append(lat, time.Since(t0))
		}
		slices.Sort(lat)
		return lat[len(lat)/2], lat[len(lat)*99/100], acked
	}
	a50, a99, _ := run(false)
	b50, b99, replicas := run(true)
	t.Logf("RESULT WAIT 1: p50 %s → %s, p99 %s → %s per write (400 sequential writes each; %d of 400 acknowledged by the replica)",
		a50.Round(time.Microsecond), b50.Round(time.Microsecond), a99.Round(time.Microsecond), b99.Round(time.Microsecond), replicas)
}

// quietRedis drops go-redis's own log lines.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}
