package reconcile

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/highgopress/highgopress/services/counter/durable"
	"github.com/highgopress/highgopress/services/counter/outbox"
	"github.com/highgopress/highgopress/services/counter/redisstore"
)

// Option configures a Reconciler.
type Option func(*options)

type options struct {
	registerer prometheus.Registerer
	quiescent  func(ctx context.Context) error
}

// WithRegisterer sets where metrics are registered (default
// prometheus.DefaultRegisterer; nil disables registration).
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }

// WithQuiescent sets the check that nothing is in flight between Redis and
// MySQL (Quiet). Repair runs only when it returns nil both before and
// after the comparison; without it Repair changes nothing.
func WithQuiescent(f func(ctx context.Context) error) Option {
	return func(o *options) { o.quiescent = f }
}

// Quiet returns the quiescence check of a deployment: the outbox
// (outbox.Stream) is empty, no rebuild waits to be settled
// (redisstore.SettleQueue; otherwise a correction and the settling would
// both add the same events), and the consumer applied every event that is
// in Kafka's topic (its pipeline_offsets in record reached ends).
func Quiet(rdb redis.Cmdable, record *durable.Store, topic string, ends durable.EndOffsets) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		n, err := rdb.XLen(ctx, outbox.Stream).Result()
		if err != nil {
			return fmt.Errorf("outbox length: %w", err)
		}
		if n > 0 {
			return fmt.Errorf("outbox holds %d entries", n)
		}
		if n, err = rdb.ZCard(ctx, redisstore.SettleQueue).Result(); err != nil {
			return fmt.Errorf("settle queue: %w", err)
		}
		if n > 0 {
			return fmt.Errorf("%d rebuilds wait to be settled", n)
		}
		end, err := ends(ctx)
		if err != nil {
			return fmt.Errorf("end offsets of %s: %w", topic, err)
		}
		return record.WaitApplied(ctx, topic, end, 0)
	}
}
