package counter_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/services/counter"
	"github.com/highgopress/highgopress/services/counter/domain"
)

// benchParallelism × GOMAXPROCS goroutines issue requests at once: the
// concurrency of a busy instance, where batching has something to batch.
const benchParallelism = 32

// latencies collects per-operation latencies from parallel goroutines.
type latencies struct {
	mu  sync.Mutex
	all []time.Duration
}

func (l *latencies) add(d []time.Duration) { l.mu.Lock(); l.all = append(l.all, d...); l.mu.Unlock() }

func (l *latencies) report(b *testing.B) {
	if len(l.all) == 0 {
		return
	}
	slices.Sort(l.all)
	q := func(p float64) float64 { return float64(l.all[int(p*float64(len(l.all)-1))].Microseconds()) }
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
}

// runParallel runs op from many goroutines, recording latencies. op gets a
// globally unique sequence number.
func runParallel(b *testing.B, op func(i int64) error) {
	var seq atomic.Int64
	var lat latencies
	b.SetParallelism(benchParallelism)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		for pb.Next() {
			i := seq.Add(1)
			start := time.Now()
			if err := op(i); err != nil {
				b.Error(err)
				return
			}
			local = append(local, time.Since(start))
		}
		lat.add(local)
	})
	b.StopTimer()
	lat.report(b)
}

func reportBatches(b *testing.B, e *env) {
	pipelines, commands := e.c.Store().Stats()
	if pipelines > 0 {
		b.ReportMetric(float64(commands)/float64(pipelines), "cmds/pipeline")
	}
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// BenchmarkLike measures likes that all change state (a new user-item pair
// each time, so every call runs the full script including the outbox
// append), at the use-case level (straight into Redis) and through the
// Connect handler over loopback h2c.
func BenchmarkLike(b *testing.B) {
	for _, level := range []string{"app", "rpc"} {
		for _, batching := range []bool{true, false} {
			b.Run(fmt.Sprintf("%s/batching=%s", level, onOff(batching)), func(b *testing.B) {
				e := newEnv(b, counter.WithBatching(batching))
				item := func(i int64) domain.ItemRef {
					return domain.ItemRef{Namespace: "bench", ID: fmt.Sprint("item-", i%1000)}
				}
				user := func(i int64) string { return fmt.Sprint("user-", i) }
				var op func(i int64) error
				if level == "app" {
					svc := e.c.App()
					op = func(i int64) error {
						_, err := svc.Like(context.Background(), user(i), item(i))
						return err
					}
				} else {
					client := counterv1connect.NewCounterServiceClient(e.http, e.url)
					op = func(i int64) error {
						it := item(i)
						_, err := client.Like(context.Background(), as(e, user(i),
							&counterv1.LikeRequest{Item: &counterv1.ItemRef{Namespace: it.Namespace, Id: it.ID}}))
						return err
					}
				}
				runParallel(b, op)
				reportBatches(b, e)
			})
		}
	}
}

// BenchmarkGetCounts reads 10 of 20 hot items per request, with the local
// cache (default TTL) and without, anonymously and as a viewer (whose likes
// are always read from Redis).
func BenchmarkGetCounts(b *testing.B) {
	hot := make([]domain.ItemRef, 20)
	for i := range hot {
		hot[i] = domain.ItemRef{Namespace: "bench", ID: fmt.Sprint("hot-", i)}
	}
	for _, ttl := range []time.Duration{100 * time.Millisecond, 0} {
		for _, viewer := range []string{"", "viewer-1"} {
			name := fmt.Sprintf("cache=%v/viewer=%v", ttl, viewer != "")
			if ttl == 0 {
				name = fmt.Sprintf("cache=off/viewer=%v", viewer != "")
			}
			b.Run(name, func(b *testing.B) {
				e := newEnv(b, counter.WithCacheTTL(ttl))
				svc := e.c.App()
				for i, it := range hot {
					for u := range i + 1 {
						if _, err := svc.Like(context.Background(), fmt.Sprint("u", u), it); err != nil {
							b.Fatal(err)
						}
					}
				}
				runParallel(b, func(i int64) error {
					start := int(i % 10)
					views, err := svc.GetCounts(context.Background(), viewer, hot[start:start+10])
					if err == nil && views[0].Counts.Likes != int64(start+1) {
						err = fmt.Errorf("item %d has %d likes; want %d", start, views[0].Counts.Likes, start+1)
					}
					return err
				})
				reportBatches(b, e)
			})
		}
	}
}
