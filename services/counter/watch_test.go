package counter_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/counter"
	"github.com/highgopress/highgopress/services/counter/app"
	"github.com/highgopress/highgopress/services/counter/domain"
	"github.com/highgopress/highgopress/services/counter/redisstore"
	"github.com/highgopress/highgopress/services/counter/watch"
)

// watched is what a WatchCounts client saw: the latest counts per item and
// the number of messages.
type watched struct {
	mu       sync.Mutex
	likes    map[string]int64
	views    map[string]int64
	messages int
	err      error
	done     bool
}

func (w *watched) snapshot() (map[string]int64, map[string]int64, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	l, v := map[string]int64{}, map[string]int64{}
	for k, n := range w.likes {
		l[k] = n
	}
	for k, n := range w.views {
		v[k] = n
	}
	return l, v, w.messages
}

// startWatch opens a WatchCounts stream and records what arrives until ctx
// is cancelled. It returns once the first message arrived.
func startWatch(t *testing.T, ctx context.Context, client counterv1connect.CounterServiceClient, items []*counterv1.ItemRef) *watched {
	t.Helper()
	stream, err := client.WatchCounts(ctx, connect.NewRequest(&counterv1.WatchCountsRequest{Items: items}))
	if err != nil {
		t.Fatalf("WatchCounts: %v", err)
	}
	w := &watched{likes: map[string]int64{}, views: map[string]int64{}}
	first := make(chan struct{})
	go func() {
		defer stream.Close()
		for stream.Receive() {
			w.mu.Lock()
			for _, c := range stream.Msg().GetCounts() {
				k := c.GetItem().GetNamespace() + "/" + c.GetItem().GetId()
				w.likes[k] = c.GetLikes()
				w.views[k] = c.GetMetrics()["views"]
			}
			w.messages++
			if w.messages == 1 {
				close(first)
			}
			w.mu.Unlock()
		}
		w.mu.Lock()
		w.err, w.done = stream.Err(), true
		if w.messages == 0 {
			close(first)
		}
		w.mu.Unlock()
	}()
	select {
	case <-first:
	case <-time.After(30 * time.Second):
		t.Fatal("no first WatchCounts message within 30s")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.messages == 0 {
		t.Fatalf("WatchCounts ended before its first message: %v", w.err)
	}
	return w
}

func watchItems(n int) []*counterv1.ItemRef {
	out := make([]*counterv1.ItemRef, n)
	for i := range out {
		out[i] = ref("art", fmt.Sprint("w", i))
	}
	return out
}

// TestWatchCountsSeesFinalValues: concurrent likes, unlikes and increments
// on 20 items; every protocol's watcher ends with exactly the stored counts.
func TestWatchCountsSeesFinalValues(t *testing.T) {
	e := newEnv(t, counter.WithWatch())
	items := watchItems(20)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watchers := map[string]*watched{}
	for _, p := range rpctest.Protocols {
		watchers[p.Name] = startWatch(t, ctx, e.counters(p), items)
	}
	for name, w := range watchers {
		l, _, n := w.snapshot()
		if n != 1 || len(l) != len(items) {
			t.Fatalf("%s: first message has %d items (%d messages); want all %d", name, len(l), n, len(items))
		}
	}

	svc := e.c.App()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range 150 {
				it := items[r.IntN(len(items))]
				item := domain.ItemRef{Namespace: it.GetNamespace(), ID: it.GetId()}
				user := fmt.Sprint("u", r.IntN(10))
				var err error
				switch r.IntN(3) {
				case 0:
					_, err = svc.Like(ctx, user, item)
				case 1:
					_, err = svc.Unlike(ctx, user, item)
				default:
					_, err = svc.Increment(ctx, user, domain.Increment{Item: item, Metric: "views", Delta: 1,
						IdempotencyKey: fmt.Sprintf("watch-key-%d-%d", g, i)})
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()

	refs := make([]domain.ItemRef, len(items))
	for i, it := range items {
		refs[i] = domain.ItemRef{Namespace: it.GetNamespace(), ID: it.GetId()}
	}
	want, err := svc.ReadCounts(ctx, refs)
	if err != nil {
		t.Fatal(err)
	}
	for name, w := range watchers {
		testenv.Eventually(t, 20*time.Second, name+" watcher converges to the stored counts", func() bool {
			l, v, _ := w.snapshot()
			for i, it := range refs {
				k := it.Namespace + "/" + it.ID
				if l[k] != want[i].Likes || v[k] != want[i].Metrics["views"] {
					return false
				}
			}
			return true
		})
		_, _, n := w.snapshot()
		t.Logf("%s: %d messages for 1200 writes", name, n)
	}
}

// TestWatchCountsAcrossReplicas: a like served by replica A reaches a
// watcher of replica B (two counters on the same Redis).
func TestWatchCountsAcrossReplicas(t *testing.T) {
	a := newEnv(t)
	b, err := counter.New(logging.Discard(), a.rdb, a.signer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	bURL, bHTTP := rpctest.Serve(t, b.Handler())
	bClient := counterv1connect.NewCounterServiceClient(bHTTP, bURL)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	item := ref("art", "replicated")
	w := startWatch(t, ctx, bClient, []*counterv1.ItemRef{item})
	if l, _, _ := w.snapshot(); l["art/replicated"] != 0 {
		t.Fatalf("first message: %v", l)
	}
	for _, user := range []string{"alice", "bob", "carol"} {
		if _, err := a.counters(rpctest.Protocols[0]).Like(ctx, as(a, user, &counterv1.LikeRequest{Item: item})); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 20*time.Second, "replica B's watcher sees replica A's likes", func() bool {
		l, _, _ := w.snapshot()
		return l["art/replicated"] == 3
	})
}

// TestWatchCountsBadInput: the request is validated like GetCounts.
func TestWatchCountsBadInput(t *testing.T) {
	e := newEnv(t)
	client := e.counters(rpctest.Protocols[0])
	cases := map[string]struct {
		items []*counterv1.ItemRef
		msg   string
	}{
		"none":      {nil, "items: at least one item is required"},
		"too many":  {watchItems(101), "items: at most 100 items per watch, got 101"},
		"duplicate": {[]*counterv1.ItemRef{ref("art", "a"), ref("art", "b"), ref("art", "a")}, "items[2]: duplicate of items[0]"},
		"bad ns":    {[]*counterv1.ItemRef{ref("Art", "a")}, "items[0].namespace"},
		"bad id":    {[]*counterv1.ItemRef{ref("art", "a b")}, "items[0].id"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			stream, err := client.WatchCounts(ctx, connect.NewRequest(&counterv1.WatchCountsRequest{Items: c.items}))
			if err == nil {
				for stream.Receive() {
					t.Fatal("a message for an invalid request")
				}
				err = stream.Err()
			}
			wantCode(t, name, err, connect.CodeInvalidArgument, c.msg)
		})
	}
	if st := e.c.Watch().Stats(); st.Streams != 0 || st.Items != 0 {
		t.Fatalf("invalid requests left state: %+v", st)
	}
}

// TestWatchCountsReleasesOnDisconnect: cancelled streams leave no
// goroutine, no watcher and no Redis subscription behind.
func TestWatchCountsReleasesOnDisconnect(t *testing.T) {
	e := newEnv(t, counter.WithWatch(watchMaxPerClient(100)))
	client := e.counters(rpctest.Protocols[0])
	// Warm up: the hub's own goroutines and the client's connection.
	warm, cancelWarm := context.WithCancel(context.Background())
	startWatch(t, warm, client, watchItems(1))
	cancelWarm()
	testenv.Eventually(t, 20*time.Second, "the warm-up stream is released", func() bool { return e.c.Watch().Stats().Streams == 0 })
	baseline := runtime.NumGoroutine()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ws []*watched
	for i := range 20 {
		ws = append(ws, startWatch(t, ctx, client, watchItems(1+i%5)))
	}
	if st := e.c.Watch().Stats(); st.Streams != 20 || st.Items != 5 {
		t.Fatalf("with 20 streams on 5 items: %+v", st)
	}
	if n := numSub(t, e, "art", "w0"); n != 1 {
		t.Fatalf("PUBSUB NUMSUB of a watched item = %d; want 1 (one subscription per replica)", n)
	}
	cancel()
	testenv.Eventually(t, 20*time.Second, "streams, items and subscriptions are released", func() bool {
		st := e.c.Watch().Stats()
		return st.Streams == 0 && st.Items == 0 && numSub(t, e, "art", "w0") == 0
	})
	testenv.Eventually(t, 20*time.Second, "goroutines back to the baseline", func() bool {
		return runtime.NumGoroutine() <= baseline
	})
	for _, w := range ws {
		w.mu.Lock()
		if !w.done || connect.CodeOf(w.err) != connect.CodeCanceled {
			t.Errorf("stream ended with done=%v err=%v; want canceled", w.done, w.err)
		}
		w.mu.Unlock()
	}
}

func numSub(t *testing.T, e *env, ns, id string) int64 {
	t.Helper()
	ch := redisstore.WatchChannel(domain.ItemRef{Namespace: ns, ID: id})
	m, err := e.rdb.PubSubNumSub(context.Background(), ch).Result()
	if err != nil {
		t.Fatal(err)
	}
	return m[ch]
}

// TestWatchCountsCaps: streams beyond the per-client cap are refused with
// ResourceExhausted; closing one makes room.
func TestWatchCountsCaps(t *testing.T) {
	e := newEnv(t, counter.WithWatch(watchMaxPerClient(2)))
	client := e.counters(rpctest.Protocols[0])
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, cancelFirst := context.WithCancel(ctx)
	startWatch(t, first, client, watchItems(1))
	startWatch(t, ctx, client, watchItems(2))
	stream, err := client.WatchCounts(ctx, connect.NewRequest(&counterv1.WatchCountsRequest{Items: watchItems(1)}))
	if err == nil {
		for stream.Receive() {
			t.Fatal("a third stream got a message")
		}
		err = stream.Err()
	}
	wantCode(t, "third stream", err, connect.CodeResourceExhausted, "this client has 2 streams open")
	cancelFirst()
	testenv.Eventually(t, 20*time.Second, "a stream slot is free again", func() bool { return e.c.Watch().Stats().Streams == 1 })
	startWatch(t, ctx, client, watchItems(1))
	if errors.Is(ctx.Err(), context.Canceled) {
		t.Fatal("context cancelled early")
	}
}

func watchMaxPerClient(n int) watch.Option { return watch.WithMaxPerClient(n) }

// stallWatch opens a Connect-JSON WatchCounts stream over a raw HTTP/1.1
// connection with a small receive buffer and never reads from it: a client
// that stopped reading. The connection closes when the test ends.
func stallWatch(t *testing.T, baseURL string, items []*counterv1.ItemRef) {
	t.Helper()
	u, err := url.Parse(baseURL)
	if err != nil {
		t.Fatal(err)
	}
	// The receive buffer is set before connecting, so the window the
	// client advertises stays small.
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	conn, err := d.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	msg, err := protojson.Marshal(&counterv1.WatchCountsRequest{Items: items})
	if err != nil {
		t.Fatal(err)
	}
	body := append([]byte{0, 0, 0, 0, 0}, msg...)
	binary.BigEndian.PutUint32(body[1:5], uint32(len(msg)))
	req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/connect+json\r\nConnect-Protocol-Version: 1\r\nContent-Length: %d\r\n\r\n",
		counterv1connect.CounterServiceWatchCountsProcedure, u.Host, len(body))
	if _, err := conn.Write(append([]byte(req), body...)); err != nil {
		t.Fatal(err)
	}
}

// bigItems gives each of n items 200 metrics, so one message of all of them
// is hundreds of kilobytes: more than socket buffers hold.
func bigItems(t *testing.T, e *env, n int) []*counterv1.ItemRef {
	t.Helper()
	items := make([]*counterv1.ItemRef, n)
	pipe := e.rdb.Pipeline()
	for i := range items {
		items[i] = ref("big", fmt.Sprint("item-", i))
		fields := []any{"likes", 0}
		for m := range 200 {
			fields = append(fields, fmt.Sprintf("metric_number_%03d", m), 1_000_000+m)
		}
		pipe.HSet(context.Background(), redisstore.CountsKey(domain.ItemRef{Namespace: "big", ID: items[i].GetId()}), fields...)
	}
	if _, err := pipe.Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	return items
}

// likeLatencies runs n likes of items from 8 goroutines at the use-case
// level and returns the p50 and p99.
func likeLatencies(t *testing.T, svc *app.Service, items []*counterv1.ItemRef, n int, userPrefix string) (p50, p99 time.Duration) {
	t.Helper()
	var (
		mu  sync.Mutex
		all []time.Duration
		wg  sync.WaitGroup
	)
	for g := range 8 {
		wg.Go(func() {
			local := make([]time.Duration, 0, n/8)
			for i := range n / 8 {
				it := items[(g*n/8+i)%len(items)]
				start := time.Now()
				if _, err := svc.Like(context.Background(), fmt.Sprintf("%s-%d-%d", userPrefix, g, i),
					domain.ItemRef{Namespace: it.GetNamespace(), ID: it.GetId()}); err != nil {
					t.Error(err)
					return
				}
				local = append(local, time.Since(start))
			}
			mu.Lock()
			all = append(all, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(all)
	return all[len(all)/2], all[len(all)*99/100]
}

// TestStalledWatcherDoesNotSlowWrites: a watcher that never reads, on
// items every write changes, leaves the write path alone (the p99 with and
// without it is logged, not asserted: docs/performance.md), holds at most
// one pending entry per item, and is dropped once a message cannot be
// written within the send timeout.
func TestStalledWatcherDoesNotSlowWrites(t *testing.T) {
	e := newEnv(t, counter.WithWatchSendTimeout(0)) // never dropped: stays stalled while writes are measured
	items := watchItems(100)
	svc := e.c.App()
	const n = 4000
	p50, p99 := likeLatencies(t, svc, items, n, "before")
	t.Logf("likes without a watcher: p50 %v p99 %v", p50, p99)

	stallWatch(t, e.url, items)
	testenv.Eventually(t, 20*time.Second, "the stalled watcher is registered", func() bool { return e.c.Watch().Stats().Streams == 1 })
	roundsBefore := e.c.Watch().Stats().Rounds
	p50w, p99w := likeLatencies(t, svc, items, n, "during")
	st := e.c.Watch().Stats()
	t.Logf("likes with a stalled watcher: p50 %v p99 %v (hub: %d rounds, %d items read, %d messages)", p50w, p99w, st.Rounds-roundsBefore, st.Reads, st.Messages)
	if st.Streams != 1 || st.Rounds == roundsBefore {
		t.Fatalf("the stalled watcher should still be open and fed: %+v", st)
	}
	// For comparison: a watcher that reads everything (the fan-out's own
	// cost: each round reads the changed items once).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	startWatch(t, ctx, e.counters(rpctest.Protocols[1]), items)
	p50r, p99r := likeLatencies(t, svc, items, n, "reading")
	t.Logf("likes with a stalled and a reading watcher: p50 %v p99 %v", p50r, p99r)

	// A replica with a send timeout drops the same stalled client.
	logs := &testenv.SyncBuffer{}
	b, err := counter.New(slog.New(slog.NewTextHandler(logs, nil)), e.rdb, e.signer, counter.WithWatchSendTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	bURL, _ := rpctest.Serve(t, b.Handler())
	// Items of 200 metrics each: a message of all of them is larger than
	// socket buffers hold, so the stalled client blocks writes soon.
	items = bigItems(t, e, 100)
	stallWatch(t, bURL, items)
	testenv.Eventually(t, 20*time.Second, "the slow watcher is registered", func() bool { return b.Watch().Stats().Streams == 1 })
	round := 0
	testenv.Eventually(t, 60*time.Second, "the slow watcher is dropped and released", func() bool {
		// Keep its items changing until its socket buffers are full.
		round++
		likeLatencies(t, b.App(), items, len(items), fmt.Sprint("drop-", round))
		return strings.Contains(logs.String(), "dropping a slow watcher") && b.Watch().Stats().Streams == 0
	})
	t.Logf("slow watcher dropped after %d rounds of 100 changes", round)
}
