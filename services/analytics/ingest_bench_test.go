package analytics_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/platform/testenv/pipetest"
	"github.com/highgopress/highgopress/services/analytics"
	"github.com/highgopress/highgopress/services/analytics/ingest"
	"github.com/highgopress/highgopress/services/analytics/internal/antest"
	"github.com/highgopress/highgopress/services/analytics/redisstore"
)

// BenchmarkIngest measures the whole ingest, Kafka to the Redis windows:
// each iteration produces 50,000 likes and unlikes (by 10,000 users over
// 5,000 items, each a state change) to a fresh topic of 3 partitions
// beforehand, then runs one analytics ingest (its own group, batches of
// 2,000 as the service's defaults) until it applied them all. The rate is
// taken from the end of the first applied batch to the end of the last, so
// that joining the group is not counted. Reported: events/s.
func BenchmarkIngest(b *testing.B) {
	rdb, prefix := antest.Redis(b)
	brokers := []string{testenv.KafkaBrokers(b)}
	const n = 50000
	var total time.Duration
	applied := 0
	for i := range b.N {
		b.StopTimer()
		topic, dlq := pipetest.Topic(b, brokers, 3), pipetest.Topic(b, brokers, 1)
		evs, _ := randomLikes(uint64(i+1), n, 10000, 5000, time.Now())
		pipetest.Produce(b, brokers, topic, evs)
		a, err := analytics.New(logging.Discard(), rdb, analytics.WithRegisterer(nil),
			analytics.WithStoreOptions(redisstore.WithPrefix(prefix)))
		if err != nil {
			b.Fatal(err)
		}
		if err := a.Prepare(context.Background()); err != nil {
			b.Fatal(err)
		}
		var (
			mu          sync.Mutex
			seen, first int
			batches     int
			t0, t1      time.Time
		)
		finished := make(chan struct{})
		hook := ingest.WithAfterApply(func(_ context.Context, batch []kafka.Message) error {
			mu.Lock()
			defer mu.Unlock()
			if seen == 0 {
				t0, first = time.Now(), len(batch)
			}
			seen += len(batch)
			batches++
			if seen == n {
				t1 = time.Now()
				close(finished)
			}
			return nil
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		b.StartTimer()
		go func() {
			done <- a.Ingest(analytics.IngestConfig{
				Kafka: config.Kafka{Brokers: brokers, Topic: topic, DLQTopic: dlq}, Group: "hgp-t-an-bench-" + antest.Suffix(),
				SessionTimeout: 6 * time.Second, BatchMax: 2000, BatchWait: 20 * time.Millisecond,
			}, hook)(ctx)
		}()
		select {
		case <-finished:
		case <-time.After(5 * time.Minute):
			b.Fatal("the ingest did not apply every event within 5 minutes")
		}
		b.StopTimer()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		_ = a.Close()
		total += t1.Sub(t0)
		b.Logf("%d events in %d batches, %s after the first batch", n, batches, t1.Sub(t0).Round(time.Millisecond))
		applied += n - first
	}
	b.ReportMetric(float64(applied)/total.Seconds(), "events/s")
}
