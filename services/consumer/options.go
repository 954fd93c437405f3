package consumer

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
		batchMax:   2000,
		batchWait:  50 * time.Millisecond,
		backoffMin: 50 * time.Millisecond,
		backoffMax: 5 * time.Second,
		registerer: prometheus.DefaultRegisterer,
	}
}

// WithBatch bounds a batch by size and by the time since its first message
// (defaults 2000 and 50ms).
func WithBatch(max int, wait time.Duration) Option {
	return func(o *options) {
		if max > 0 {
			o.batchMax = max
		}
		if wait > 0 {
			o.batchWait = wait
		}
	}
}

// WithBackoff sets the retry delays after a failed MySQL or Kafka call.
func WithBackoff(min, max time.Duration) Option {
	return func(o *options) {
		if min > 0 && max >= min {
			o.backoffMin, o.backoffMax = min, max
		}
	}
}

// WithRegisterer sets where metrics are registered (default
// prometheus.DefaultRegisterer; nil disables registration).
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }

// WithAfterApply installs a hook called after a batch's transaction
// committed and before its offsets are committed. An error from it ends Run
// with that error, offsets uncommitted: crash tests use it to stop the
// consumer exactly between the two commits.
func WithAfterApply(f func(ctx context.Context, batch []kafka.Message) error) Option {
	return func(o *options) { o.afterApply = f }
}
