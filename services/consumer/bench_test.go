package consumer_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/platform/testenv/pipetest"
	"github.com/highgopress/highgopress/services/consumer"
)

// BenchmarkConsumer measures events/s from Kafka into MySQL: b.N events
// (60% like/unlike, 20% follow/unfollow, 20% increments, from 20,000 users
// on 2,000 items) are produced to a 4-partition topic before the timer
// starts; the timer covers the consumer joining the group, applying every
// event and committing every offset. steady_events/s counts from the first
// applied batch on (without the group join).
// Run: go test -run '^$' -bench Consumer -benchtime 100000x ./services/consumer/
func BenchmarkConsumer(b *testing.B) {
	for _, workers := range []int{1, 2} {
		for _, batch := range []int{500, 2000} {
			b.Run("workers="+strconv.Itoa(workers)+"/batch="+strconv.Itoa(batch), func(b *testing.B) {
				e := setup(b)
				o := pipetest.NewOracle(uint64(b.N))
				var ops []pipetest.Op
				for len(ops) < b.N {
					ops = append(ops, o.Generate(b.N, 20000, 2000)...)
				}
				e.Produce(b, pipetest.Events(ops[:b.N], 1))
				var first atomic.Int64 // unix ns of the first applied batch
				b.ResetTimer()
				start := time.Now()
				e.workers = workers
				startConsumer(b, e, batch, consumer.WithAfterApply(func(context.Context, []kafka.Message) error {
					first.CompareAndSwap(0, time.Now().UnixNano())
					return nil
				}))
				testenv.EventuallyNoError(b, 10*time.Minute, "the topic drained", func() error {
					return pipetest.Drained(context.Background(), e.Brokers, e.Group, e.Topic)
				})
				elapsed := time.Since(start)
				b.StopTimer()
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
				b.ReportMetric(float64(b.N)/time.Since(time.Unix(0, first.Load())).Seconds(), "steady_events/s")
			})
		}
	}
}
