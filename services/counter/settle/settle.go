// Package settle completes state the counter rebuilt from MySQL while
// events were still on their way there.
//
// A rebuild (after an eviction, a restart without persistence or a
// FLUSHALL) installs what MySQL holds at that moment. Events older than the
// rebuild that were still in the outbox, in a relay or in Kafka reach MySQL
// later, but no longer Redis: without settling, a like in flight would be
// missing from the rebuilt likers set (the user could like again, or not
// unlike) and the count would stay below MySQL's.
//
// Every rebuild therefore records a boundary (an outbox stream id between
// the older and the newer events) and is queued. The worker takes due
// entries, waits until every event older than the boundary reached MySQL —
// no outbox entry older than the boundary remains (the relay deletes
// entries once Kafka has them), and the consumer's applied offsets
// (pipeline_offsets) have reached the ends of the topic's partitions — then
// reads MySQL counting only the older events and applies it: pairs not
// touched since the rebuild take MySQL's state, metrics get the increments
// the rebuild missed (package redisstore, SettleItem and SettleUser).
//
// Events that a relay held in memory when Redis lost its data are not in
// the outbox and may reach Kafka after the ends were read; the delay before
// a rebuild is due (HGP_COUNTER_SETTLE_DELAY) is there to let them land.
// Events that were in the outbox but not read by any relay are lost with
// Redis's data: they never reach MySQL, and settling cannot restore them.
package settle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/highgopress/highgopress/services/counter/domain"
	"github.com/highgopress/highgopress/services/counter/durable"
	"github.com/highgopress/highgopress/services/counter/redisstore"
	"github.com/highgopress/highgopress/services/counter/relay"
)

// Store is the Redis side (implemented by *redisstore.Store).
type Store interface {
	ClaimSettle(ctx context.Context, max int, lease time.Duration) ([]redisstore.SettleTarget, error)
	PostponeSettle(ctx context.Context, targets []redisstore.SettleTarget, d time.Duration) error
	SettleQueued(ctx context.Context) (int64, error)
	OldestOutboxID(ctx context.Context) (string, error)
	SettleItem(ctx context.Context, t redisstore.SettleTarget, st domain.ItemSettlement) (redisstore.SettleResult, error)
	SettleUser(ctx context.Context, t redisstore.SettleTarget, st domain.UserSettlement) (redisstore.SettleResult, error)
}

// Durable is the MySQL side (implemented by *durable.Store).
type Durable interface {
	SettleItem(ctx context.Context, item domain.ItemRef, boundary uint64) (domain.ItemSettlement, error)
	SettleUser(ctx context.Context, user string, boundary uint64) (domain.UserSettlement, error)
	// WaitApplied waits up to within until the consumer applied every
	// message below ends (an error when it did not).
	WaitApplied(ctx context.Context, topic string, ends map[int]int64, within time.Duration) error
}

// EndOffsets returns, per partition of the topic, the offset the next
// message will get (implemented by events.EndOffsets).
type EndOffsets func(ctx context.Context) (map[int]int64, error)

// Worker settles rebuilt state.
type Worker struct {
	logger  *slog.Logger
	store   Store
	durable Durable
	ends    EndOffsets
	topic   string
	o       options
	m       *metrics
}

// New returns a Worker for the events of topic.
func New(logger *slog.Logger, store Store, durable Durable, ends EndOffsets, topic string, opts ...Option) *Worker {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	return &Worker{logger: logger, store: store, durable: durable, ends: ends, topic: topic, o: o, m: newMetrics(o.registerer)}
}

// Run settles due entries every interval until ctx ends (then it returns
// nil). Failures are logged and retried on the next round.
func (w *Worker) Run(ctx context.Context) error {
	t := time.NewTicker(w.o.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for {
			n, err := w.Pass(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				if errors.Is(err, durable.ErrBehind) {
					// Postponed, not failed: the consumer is behind.
					w.logger.Info("settling postponed", "err", err)
					break
				}
				w.m.errors.Inc()
				w.logger.Warn("settling rebuilt state failed; retrying", "err", err)
				break
			}
			if n < w.o.batch {
				break
			}
		}
	}
}

// Pass settles up to the batch size of due targets and returns how many it
// took from the queue (settled, already settled or postponed).
func (w *Worker) Pass(ctx context.Context) (int, error) {
	if n, err := w.store.SettleQueued(ctx); err == nil {
		w.m.queued.Set(float64(n))
	}
	targets, err := w.store.ClaimSettle(ctx, w.o.batch, w.o.lease)
	if err != nil || len(targets) == 0 {
		return 0, err
	}
	ready, err := w.outboxDrained(ctx, targets)
	if err != nil {
		return len(targets), err
	}
	if len(ready) == 0 {
		return len(targets), nil
	}
	start := time.Now()
	if err := w.caughtUp(ctx); err != nil {
		// The consumer is behind or down: try again after as long as this
		// wait took, so a long outage costs half the polling, not all.
		w.m.targets.WithLabelValues("postponed").Add(float64(len(ready)))
		return len(targets), errors.Join(err, w.store.PostponeSettle(ctx, ready, max(w.o.interval, w.o.catchUp)))
	}
	w.m.wait.Observe(time.Since(start).Seconds())
	var errs []error
	for _, t := range ready {
		if err := w.settle(ctx, t); err != nil {
			w.m.targets.WithLabelValues("failed").Inc()
			errs = append(errs, err)
		}
	}
	return len(targets), errors.Join(errs...)
}

// outboxDrained returns the targets whose older events have all left the
// outbox; the others are postponed.
func (w *Worker) outboxDrained(ctx context.Context, targets []redisstore.SettleTarget) ([]redisstore.SettleTarget, error) {
	oldest, err := w.store.OldestOutboxID(ctx)
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	if oldest == "" {
		return targets, nil
	}
	ov, _, err := relay.Version(oldest)
	if err != nil {
		return nil, fmt.Errorf("oldest outbox entry: %w", err)
	}
	var ready, later []redisstore.SettleTarget
	for _, t := range targets {
		bv, _, err := relay.Version(t.Boundary)
		if err != nil {
			// Cannot happen for ids written by the seed scripts; such an
			// entry could never be settled, so it is left to its lease.
			w.logger.Error("settle boundary is not an outbox stream id", "key", t.Key, "boundary", t.Boundary, "err", err)
			continue
		}
		if ov > bv {
			ready = append(ready, t)
		} else {
			later = append(later, t)
		}
	}
	if len(later) > 0 {
		w.m.targets.WithLabelValues("postponed").Add(float64(len(later)))
		if err := w.store.PostponeSettle(ctx, later, w.o.interval); err != nil {
			return nil, err
		}
	}
	return ready, nil
}

// caughtUp waits (up to the catch-up limit) until the consumer applied
// every message that is in the topic now.
func (w *Worker) caughtUp(ctx context.Context) error {
	ends, err := w.ends(ctx)
	if err != nil {
		return fmt.Errorf("end offsets of %s: %w", w.topic, err)
	}
	return w.durable.WaitApplied(ctx, w.topic, ends, w.o.catchUp)
}

func (w *Worker) settle(ctx context.Context, t redisstore.SettleTarget) error {
	boundary, _, err := relay.Version(t.Boundary)
	if err != nil {
		return fmt.Errorf("%s: %w", t.Key, err)
	}
	var res redisstore.SettleResult
	if t.User != "" {
		st, err := w.durable.SettleUser(ctx, t.User, boundary)
		if err != nil {
			return fmt.Errorf("settle user %s: read MySQL: %w", t.User, err)
		}
		if res, err = w.store.SettleUser(ctx, t, st); err != nil {
			return fmt.Errorf("settle user %s: %w", t.User, err)
		}
	} else {
		st, err := w.durable.SettleItem(ctx, t.Item, boundary)
		if err != nil {
			return fmt.Errorf("settle item %s/%s: read MySQL: %w", t.Item.Namespace, t.Item.ID, err)
		}
		if res, err = w.store.SettleItem(ctx, t, st); err != nil {
			return fmt.Errorf("settle item %s/%s: %w", t.Item.Namespace, t.Item.ID, err)
		}
	}
	if !res.Settled {
		w.m.targets.WithLabelValues("skipped").Inc()
		return nil
	}
	w.m.targets.WithLabelValues("settled").Inc()
	w.m.changes.WithLabelValues("likes").Add(float64(abs(res.Likes)))
	w.m.changes.WithLabelValues("following").Add(float64(abs(res.Following)))
	w.m.changes.WithLabelValues("followers").Add(float64(abs(res.Followers)))
	w.m.changes.WithLabelValues("metrics").Add(float64(res.Metrics))
	if res.Likes != 0 || res.Following != 0 || res.Followers != 0 || res.Metrics != 0 {
		w.logger.Info("settled rebuilt state", "key", t.Key, "likes", res.Likes,
			"following", res.Following, "followers", res.Followers, "metrics_fixed", res.Metrics)
	}
	return nil
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}
