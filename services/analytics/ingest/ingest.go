// Package ingest feeds the analytics windows from the user-actions topic:
// it reads in its own consumer group, applies each batch to the store in
// one atomic step per chunk, dead-letters what cannot be decoded, and
// commits offsets only after the batch was applied. A crash between the
// apply and the commit redelivers the batch, which the store's dedupe makes
// harmless.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/platform/backoff"
	"github.com/highgopress/highgopress/platform/events"
	platformmetrics "github.com/highgopress/highgopress/platform/metrics"
	"github.com/highgopress/highgopress/services/analytics/redisstore"
)

// Reader is the part of *kafka.Reader the loop uses.
type Reader interface {
	FetchMessage(ctx context.Context) (kafka.Message, error)
	CommitMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Writer writes dead letters; WriteMessages returns once acknowledged.
type Writer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Applier applies valid events atomically and idempotently.
type Applier interface {
	Apply(ctx context.Context, evs []*eventsv1.Event) (redisstore.Result, error)
}

// Consumer moves events from a reader into an Applier.
type Consumer struct {
	logger *slog.Logger
	r      Reader
	apply  Applier
	dlq    Writer
	o      options
	m      *metrics
}

// New returns a Consumer; dlq receives what cannot be decoded.
func New(logger *slog.Logger, r Reader, a Applier, dlq Writer, opts ...Option) *Consumer {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	return &Consumer{logger: logger, r: r, apply: a, dlq: dlq, o: o, m: newMetrics(o.registerer)}
}

// Run consumes until ctx ends (then it returns nil) or the reader fails for
// good. Redis and Kafka failures are retried with backoff.
//
// Reading is pipelined with applying: while one batch is applied and
// committed, the next one is fetched and decoded (at most one batch
// ahead). Batches are applied and committed in the order they were read,
// and a batch's offsets are committed only after it was applied.
func (c *Consumer) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan decoded, 1)
	fetched := make(chan error, 1)
	go func() { fetched <- c.read(ctx, batches) }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-fetched:
			if ctx.Err() != nil {
				return nil
			}
			return err
		case d := <-batches:
			if err := c.handle(ctx, d); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
	}
}

// read fetches and decodes batches into out until ctx ends (nil) or the
// reader fails for good; other fetch errors are retried with backoff.
func (c *Consumer) read(ctx context.Context, out chan<- decoded) error {
	b := backoff.New(c.o.backoffMin, c.o.backoffMax)
	for {
		batch, err := c.fetch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("fetch: %w", err)
			}
			c.m.errors.WithLabelValues("fetch").Inc()
			c.logger.Warn("kafka fetch failed, retrying", "err", err)
			if !b.Wait(ctx) {
				return nil
			}
			continue
		}
		b.Reset()
		select {
		case out <- c.decode(batch):
		case <-ctx.Done():
			return nil
		}
	}
}

// fetch returns at least one message: up to batchMax, waiting at most
// batchWait after the first.
func (c *Consumer) fetch(ctx context.Context) ([]kafka.Message, error) {
	first, err := c.r.FetchMessage(ctx)
	if err != nil {
		return nil, err
	}
	batch := make([]kafka.Message, 1, c.o.batchMax)
	batch[0] = first
	wctx, cancel := context.WithTimeout(ctx, c.o.batchWait)
	defer cancel()
	for len(batch) < c.o.batchMax {
		m, err := c.r.FetchMessage(wctx)
		if err != nil {
			break // time is up, or the reader failed: the next fetch reports it
		}
		batch = append(batch, m)
	}
	return batch, nil
}

// decoded is a fetched batch: its messages, the valid events and the
// dead letters of what could not be decoded.
type decoded struct {
	batch []kafka.Message
	evs   []*eventsv1.Event
	bad   []kafka.Message
}

func (c *Consumer) decode(batch []kafka.Message) decoded {
	d := decoded{batch: batch, evs: make([]*eventsv1.Event, 0, len(batch))}
	for _, m := range batch {
		ev, err := events.Decode(m.Value)
		if err != nil {
			d.bad = append(d.bad, events.DeadLetter(m, err.Error()))
			c.logger.Warn("message dead-lettered", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "reason", err.Error())
			continue
		}
		d.evs = append(d.evs, ev)
	}
	return d
}

// handle applies, dead-letters and commits one decoded batch.
func (c *Consumer) handle(ctx context.Context, d decoded) error {
	start := time.Now()
	batch, evs, bad := d.batch, d.evs, d.bad
	// A span per batch, linked to the request behind every event: the trace
	// of a like leads to the batch that put it into the rankings.
	actx, endSpan := events.StartBatchSpan(ctx, "analytics apply", "process", trace.SpanKindConsumer, "", batch)
	var res redisstore.Result
	err := c.retry(actx, "apply", func() error {
		var err error
		res, err = c.apply.Apply(actx, evs)
		return err
	})
	endSpan(err)
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		if err := c.retry(ctx, "dead_letter", func() error { return c.dlq.WriteMessages(ctx, bad...) }); err != nil {
			return err
		}
		c.m.deadLetters.Add(float64(len(bad)))
	}
	if c.o.afterApply != nil {
		if err := c.o.afterApply(ctx, batch); err != nil {
			return fmt.Errorf("after apply: %w", err)
		}
	}
	// Committed even when shutting down: the batch is applied.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := c.r.CommitMessages(cctx, batch...); err != nil {
		c.m.errors.WithLabelValues("commit").Inc()
		c.logger.Warn("offset commit failed; messages will be redelivered (harmless)", "err", err, "messages", len(batch))
	}
	c.m.events.WithLabelValues("transition").Add(float64(res.Transitions))
	c.m.events.WithLabelValues("ignored").Add(float64(res.Ignored + res.Duplicates))
	c.m.events.WithLabelValues("api_call").Add(float64(res.APICalls))
	c.m.events.WithLabelValues("skipped").Add(float64(res.Skipped))
	c.m.events.WithLabelValues("dead_letter").Add(float64(len(bad)))
	c.m.batchTime.Observe(time.Since(start).Seconds())
	return nil
}

// retry runs f until it succeeds or ctx ends, waiting with backoff.
func (c *Consumer) retry(ctx context.Context, op string, f func() error) error {
	b := backoff.New(c.o.backoffMin, c.o.backoffMax)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.m.errors.WithLabelValues(op).Inc()
		c.logger.Warn(op+" failed; retrying", "err", err)
		if !b.Wait(ctx) {
			return ctx.Err()
		}
	}
}

type metrics struct {
	events      *prometheus.CounterVec
	deadLetters prometheus.Counter
	batchTime   prometheus.Histogram
	errors      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hgp_analytics_events_total",
			Help: "Events read by analytics, by result: transition, ignored (stale, replayed, same state), api_call, skipped (other kinds), dead_letter.",
		}, []string{"result"}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hgp_analytics_dead_letters_total",
			Help: "Messages analytics sent to the dead-letter topic.",
		}),
		batchTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hgp_analytics_batch_seconds",
			Help:    "Time to apply one batch to the windows and commit its offsets.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hgp_analytics_errors_total",
			Help: "Failed analytics ingest operations, by operation; each is retried.",
		}, []string{"op"}),
	}
	if reg == nil {
		return m
	}
	m.events = platformmetrics.Register(reg, m.events)
	m.deadLetters = platformmetrics.Register(reg, m.deadLetters)
	m.batchTime = platformmetrics.Register(reg, m.batchTime)
	m.errors = platformmetrics.Register(reg, m.errors)
	return m
}
