package ingest

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// Option configures a Consumer.
type Option func(*options)

type options struct {
	batchMax   int
	batchWait  time.Duration
	backoffMin time.Duration
	backoffMax time.Duration
	registerer prometheus.Registerer
	afterApply func(ctx context.Context, batch []kafka.Message) error
}

func defaultOptions() options {
	return options{
		batchMax: 2000, batchWait: 20 * time.Millisecond,
		backoffMin: 50 * time.Millisecond, backoffMax: 5 * time.Second,
		registerer: prometheus.DefaultRegisterer,
	}
}

// WithBatch bounds a batch by size and by the time since its first message
// (defaults 2000 and 20ms).
func WithBatch(n int, wait time.Duration) Option {
	return func(o *options) {
		if n > 0 {
			o.batchMax = n
		}
		if wait > 0 {
			o.batchWait = wait
		}
	}
}

// WithBackoff sets the retry delays after a failed Redis or Kafka call.
func WithBackoff(lo, hi time.Duration) Option {
	return func(o *options) {
		if lo > 0 && hi >= lo {
			o.backoffMin, o.backoffMax = lo, hi
		}
	}
}

// WithRegisterer sets where metrics are registered (nil: nowhere).
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }

// WithAfterApply installs a hook run after a batch was applied and before
// its offsets are committed; an error ends Run with offsets uncommitted.
func WithAfterApply(f func(ctx context.Context, batch []kafka.Message) error) Option {
	return func(o *options) { o.afterApply = f }
}
