package durable

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// EndOffsets returns, per partition of the event topic, the offset the
// next message will get (events.EndOffsets).
type EndOffsets func(ctx context.Context) (map[int]int64, error)

// Option configures a Store.
type Option func(*Store)

// WithCatchUp makes every snapshot (LoadItem, LoadUser) first wait, up to
// max, until the consumer applied every event that is in Kafka when the
// load starts: a rebuild then includes the events that were in flight
// between Kafka and MySQL, and the rebuilt count is not below MySQL's
// later value. When the wait fails or runs out the snapshot is read anyway
// (rebuilds stay available while the consumer is down) and settling
// brings in what it missed.
func WithCatchUp(logger *slog.Logger, topic string, ends EndOffsets, max time.Duration) Option {
	return func(s *Store) {
		s.logger, s.topic, s.ends, s.catchUpMax = logger, topic, ends, max
	}
}

// ErrBehind means the consumer has not applied everything in Kafka within
// the time allowed.
var ErrBehind = errors.New("the consumer has not applied every event in Kafka yet")

// pollApplied is the interval of the applied-offsets polls.
const pollApplied = 20 * time.Millisecond

// WaitApplied waits up to within until the consumer's applied offsets of
// topic (pipeline_offsets) reach ends on every partition. It returns an
// error wrapping ErrBehind when they do not.
func (s *Store) WaitApplied(ctx context.Context, topic string, ends map[int]int64, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		applied, err := s.AppliedOffsets(ctx, topic)
		if err != nil {
			return err
		}
		behind := -1
		for p, end := range ends {
			if end > 0 && applied[p] < end {
				behind = p
				break
			}
		}
		if behind < 0 {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("%w (%s partition %d: applied up to offset %d of %d, waited %s)",
				ErrBehind, topic, behind, applied[behind], ends[behind], within)
		}
		t := time.NewTimer(min(pollApplied, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// catchUp waits as WithCatchUp says; failures are logged, not returned.
// Concurrent loads share one wait (after a FLUSHALL every item and user is
// rebuilt at once): a load that finds a wait in progress joins it rather
// than reading the end offsets and polling MySQL on its own. The shared
// wait read the end offsets a moment earlier; what reached Kafka in between
// was held by a relay, which settling covers.
func (s *Store) catchUp(ctx context.Context) {
	if s.ends == nil {
		return
	}
	s.waitMu.Lock()
	w := s.wait
	if w == nil {
		w = &sharedWait{done: make(chan struct{})}
		s.wait = w
		go s.runWait(context.WithoutCancel(ctx), w)
	}
	s.waitMu.Unlock()
	select {
	case <-w.done:
	case <-ctx.Done():
	}
}

// sharedWait is one catch-up wait that concurrent loads share.
type sharedWait struct{ done chan struct{} }

func (s *Store) runWait(ctx context.Context, w *sharedWait) {
	defer func() {
		s.waitMu.Lock()
		s.wait = nil
		s.waitMu.Unlock()
		close(w.done)
	}()
	s.waits.Add(1)
	catchUpWaits.Inc()
	ctx, cancel := context.WithTimeout(ctx, s.catchUpMax+5*time.Second)
	defer cancel()
	ends, err := s.ends(ctx)
	if err == nil {
		err = s.WaitApplied(ctx, s.topic, ends, s.catchUpMax)
	}
	if err != nil {
		catchUpTimeouts.Inc()
		s.logger.Warn("rebuilding from MySQL before it caught up with Kafka; settling will add the missing events", "err", err)
	}
}

// CatchUpWaits returns how many catch-up waits the Store ran (loads that
// joined a running wait are not counted).
func (s *Store) CatchUpWaits() int64 { return s.waits.Load() }
