// Package consumer is the durable half of the write path: it reads
// user-action events from Kafka in a consumer group, applies them to MySQL
// in one idempotent transaction per batch (package sink) and commits the
// offsets only after the transaction committed. Messages that cannot be
// decoded or applied go to a dead-letter topic with the reason, so a
// partition never stalls. How far each partition has been applied is
// recorded in MySQL (pipeline_offsets, sink.Mark) in the batch's
// transaction, so readers of MySQL can tell when it caught up with Kafka.
package consumer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/platform/backoff"
	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/services/consumer/sink"
)

// Dead-letter headers added to a message copied to the dead-letter topic
// (events.DeadLetter).
const (
	// HeaderDLQReason says why the message was dead-lettered.
	HeaderDLQReason = events.HeaderDLQReason
	// HeaderDLQSource is "<topic>/<partition>/<offset>" of the original.
	HeaderDLQSource = events.HeaderDLQSource
)

// Reader is the part of *kafka.Reader (with a GroupID) the consumer uses.
type Reader interface {
	FetchMessage(ctx context.Context) (kafka.Message, error)
	CommitMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Writer writes dead letters; WriteMessages returns after the broker
// acknowledged them.
type Writer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Applier applies a batch of valid events and raises the offset marks in
// one transaction; with no events it writes only the marks.
type Applier interface {
	Apply(ctx context.Context, events []*eventsv1.Event, marks []sink.Mark) (sink.Result, error)
}

// Consumer moves events from a Kafka reader into an Applier.
type Consumer struct {
	logger    *slog.Logger
	r         Reader
	sink      Applier
	dlq       Writer
	o         options
	m         *metrics
	lastStats time.Time
}

// New returns a Consumer. dlq receives poison messages.
func New(logger *slog.Logger, r Reader, s Applier, dlq Writer, opts ...Option) *Consumer {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	return &Consumer{logger: logger, r: r, sink: s, dlq: dlq, o: o, m: newMetrics(o.registerer)}
}

// Run consumes until ctx is cancelled (then it returns nil) or the reader
// fails. MySQL and Kafka errors are retried with backoff. The next batch is
// fetched and decoded while the current one is applied.
func (c *Consumer) Run(ctx context.Context) error {
	fctx, cancel := context.WithCancel(ctx)
	batches := make(chan prepared, 1)
	go func() {
		defer close(batches)
		b := backoff.New(c.o.backoffMin, c.o.backoffMax)
		var next *kafka.Message // fetched while skipping queued errors
		for {
			msgs, err := c.fetch(fctx, next)
			next = nil
			if err != nil && fctx.Err() == nil && !errors.Is(err, io.EOF) {
				// A broker restart or a rebalance: the reader reconnects by
				// itself, so wait and fetch again rather than stopping.
				c.m.errors.WithLabelValues("fetch").Inc()
				c.logger.Warn("kafka fetch failed, retrying", "err", err)
				var skipped int
				next, skipped = c.skipQueuedErrors(fctx)
				if skipped > 0 {
					c.m.errors.WithLabelValues("fetch").Add(float64(skipped))
					c.logger.Warn("kafka fetch: skipped errors the reader had queued", "errors", skipped)
				}
				if next == nil && !b.Wait(fctx) {
					return
				}
				continue
			}
			b.Reset()
			p := prepared{err: err}
			if err == nil {
				p = decodeBatch(msgs)
			}
			select {
			case batches <- p:
			case <-fctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		cancel()
		for range batches { // wait for the fetcher to stop
		}
	}()
	for p := range batches {
		if ctx.Err() != nil {
			return nil
		}
		if p.err != nil {
			return fmt.Errorf("fetch: %w", p.err)
		}
		if err := c.handle(ctx, p); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	return nil
}

// prepared is a fetched batch, decoded.
type prepared struct {
	batch  []kafka.Message
	events []*eventsv1.Event
	msgs   []kafka.Message // the message of each event
	bad    []poison
	marks  []sink.Mark // per topic partition: highest offset of the batch + 1
	err    error
}

func decodeBatch(batch []kafka.Message) prepared {
	p := prepared{
		batch:  batch,
		events: make([]*eventsv1.Event, 0, len(batch)),
		msgs:   make([]kafka.Message, 0, len(batch)),
	}
	for _, m := range batch {
		ev, err := events.Decode(m.Value)
		if err != nil {
			p.bad = append(p.bad, poison{m, err.Error()})
			continue
		}
		p.events = append(p.events, ev)
		p.msgs = append(p.msgs, m)
	}
	p.marks = batchMarks(batch)
	return p
}

// batchMarks returns, per topic partition of batch, the offset after its last
// message, poison included. Once the batch is handled, every message below
// it is: the reader hands out a partition's messages in offset order from
// the committed offset, and earlier batches were handled before this one.
func batchMarks(batch []kafka.Message) []sink.Mark {
	type tp struct {
		topic     string
		partition int
	}
	next := map[tp]int64{}
	for _, m := range batch {
		k := tp{m.Topic, m.Partition}
		if n, ok := next[k]; !ok || m.Offset+1 > n {
			next[k] = m.Offset + 1
		}
	}
	out := make([]sink.Mark, 0, len(next))
	for k, n := range next {
		out = append(out, sink.Mark{Topic: k.topic, Partition: k.partition, Next: n})
	}
	slices.SortFunc(out, func(a, b sink.Mark) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	return out
}

// fetch returns at least one message: up to batchMax, waiting at most
// batchWait after the first.
func (c *Consumer) fetch(ctx context.Context, first *kafka.Message) ([]kafka.Message, error) {
	if first == nil {
		m, err := c.r.FetchMessage(ctx)
		if err != nil {
			return nil, err
		}
		first = &m
	}
	batch := make([]kafka.Message, 1, c.o.batchMax)
	batch[0] = *first
	wctx, cancel := context.WithTimeout(ctx, c.o.batchWait)
	defer cancel()
	for len(batch) < c.o.batchMax {
		m, err := c.r.FetchMessage(wctx)
		if err != nil {
			// Batch time is up, or the reader failed after handing out
			// messages: apply what was fetched (the reader will not hand
			// those messages out again), the next fetch reports the error.
			break
		}
		batch = append(batch, m)
	}
	return batch, nil
}

// queuedWait is how long skipQueuedErrors waits for the reader's next
// message or error: what is already queued comes at once.
const queuedWait = 5 * time.Millisecond

// skipQueuedErrors takes, after a fetch error, the errors kafka-go's reader
// already queued: a partition reader whose leader is unreachable (a broker
// killed, before the controller moved the partition) queues one error per
// attempt, every 10–100 ms (ReadBackoffMin/Max), among the messages of the
// other partitions. Backing off once per queued error stalled every
// partition for minutes after a broker died; they are skipped at once
// instead, and the backoff applies only when no message follows them. It
// returns the first message found (the start of the next batch) and how
// many errors it skipped.
func (c *Consumer) skipQueuedErrors(ctx context.Context) (*kafka.Message, int) {
	skipped := 0
	for {
		qctx, cancel := context.WithTimeout(ctx, queuedWait)
		m, err := c.r.FetchMessage(qctx)
		cancel()
		switch {
		case err == nil:
			return &m, skipped
		case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF):
			return nil, skipped // nothing queued (or stopping): back off
		}
		skipped++
	}
}

type poison struct {
	msg    kafka.Message
	reason string
}

// handle applies one batch, dead-letters its poison, records its offset
// marks in MySQL and commits its offsets.
func (c *Consumer) handle(ctx context.Context, p prepared) error {
	start := time.Now()
	batch, bad := p.batch, p.bad
	actx, endSpan := startApply(ctx, batch)
	res, marked, err := c.apply(actx, p.events, p.msgs, p.marks, &bad)
	endSpan(err)
	if err != nil {
		return err
	}
	if err := c.deadLetter(ctx, bad); err != nil {
		return err
	}
	if !marked {
		if err := c.mark(ctx, p.marks); err != nil {
			return err
		}
	}
	if c.o.afterApply != nil {
		if err := c.o.afterApply(ctx, batch); err != nil {
			return fmt.Errorf("after apply: %w", err)
		}
	}
	// Offsets are committed even when shutting down, so a finished batch is
	// not redelivered needlessly (redelivery would be harmless).
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := c.r.CommitMessages(cctx, batch...); err != nil {
		// A rebalance took the partition away, or the broker is down: the
		// next owner gets these messages again and applies nothing twice.
		c.m.errors.WithLabelValues("commit").Inc()
		c.logger.Warn("offset commit failed; messages will be redelivered", "err", err, "messages", len(batch))
	}
	c.m.events.WithLabelValues("transition").Add(float64(res.Transitions))
	c.m.events.WithLabelValues("increment").Add(float64(res.Increments))
	c.m.events.WithLabelValues("ignored").Add(float64(res.Ignored))
	c.m.events.WithLabelValues("dead_letter").Add(float64(len(bad)))
	c.m.batchSize.Observe(float64(len(batch)))
	c.m.batchTime.Observe(time.Since(start).Seconds())
	c.sampleLag()
	return nil
}

// applyRetrying runs one Apply, retrying transient failures with backoff
// until it succeeds, fails permanently (that error is returned) or ctx
// ends. what names the work in the log.
func (c *Consumer) applyRetrying(ctx context.Context, what string, events []*eventsv1.Event, marks []sink.Mark) (sink.Result, error) {
	b := backoff.New(c.o.backoffMin, c.o.backoffMax)
	for {
		res, err := c.sink.Apply(ctx, events, marks)
		if err == nil {
			return res, nil
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		if sink.Permanent(err) {
			return res, err
		}
		c.m.errors.WithLabelValues("apply").Inc()
		c.logger.Warn(what+" failed; retrying", "err", err, "events", len(events), "marks", len(marks))
		if !b.Wait(ctx) {
			return res, ctx.Err()
		}
	}
}

// apply applies events with the batch's offset marks in one transaction,
// retrying transient failures until ctx ends; the bool reports that the marks
// were written. When the batch fails permanently it applies the events one
// by one, without marks, and adds those that fail permanently to bad; with
// no events it writes nothing. The caller then writes the marks once the
// poison is dead-lettered.
func (c *Consumer) apply(ctx context.Context, events []*eventsv1.Event, msgs []kafka.Message, marks []sink.Mark, bad *[]poison) (sink.Result, bool, error) {
	if len(events) == 0 {
		return sink.Result{}, false, nil
	}
	res, err := c.applyRetrying(ctx, "applying batch", events, marks)
	if err == nil {
		return res, true, nil
	}
	if ctx.Err() != nil || !sink.Permanent(err) {
		return res, false, err
	}
	c.logger.Warn("batch failed permanently; applying its events one by one", "err", err, "events", len(events))
	res, err = c.applyEach(ctx, events, msgs, bad)
	return res, false, err
}

// mark writes offset marks alone (a batch applied event by event, or
// without valid events), retrying transient failures until ctx ends. A
// permanent failure stops the consumer: the marks cannot be stored.
func (c *Consumer) mark(ctx context.Context, marks []sink.Mark) error {
	if len(marks) == 0 {
		return nil
	}
	if _, err := c.applyRetrying(ctx, "recording offset marks", nil, marks); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("record offset marks: %w", err)
	}
	return nil
}

func (c *Consumer) applyEach(ctx context.Context, events []*eventsv1.Event, msgs []kafka.Message, bad *[]poison) (sink.Result, error) {
	var total sink.Result
	for i, ev := range events {
		res, err := c.applyRetrying(ctx, "applying one event", []*eventsv1.Event{ev}, nil)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return total, ctx.Err()
		default: // permanent
			*bad = append(*bad, poison{msgs[i], "apply: " + err.Error()})
			continue
		}
		total.Transitions += res.Transitions
		total.Increments += res.Increments
		total.Ignored += res.Ignored
	}
	return total, nil
}

// deadLetter copies poison messages to the dead-letter topic, retrying
// until the broker acknowledges them or ctx ends.
func (c *Consumer) deadLetter(ctx context.Context, bad []poison) error {
	if len(bad) == 0 {
		return nil
	}
	out := make([]kafka.Message, 0, len(bad))
	for _, p := range bad {
		out = append(out, events.DeadLetter(p.msg, p.reason))
		c.logger.Warn("message dead-lettered", "topic", p.msg.Topic, "partition", p.msg.Partition, "offset", p.msg.Offset, "reason", p.reason)
	}
	b := backoff.New(c.o.backoffMin, c.o.backoffMax)
	for {
		err := c.dlq.WriteMessages(ctx, out...)
		if err == nil {
			c.m.deadLetters.Add(float64(len(out)))
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.m.errors.WithLabelValues("dead_letter").Inc()
		c.logger.Warn("writing dead letters failed; retrying", "err", err)
		if !b.Wait(ctx) {
			return ctx.Err()
		}
	}
}

func (c *Consumer) sampleLag() {
	s, ok := c.r.(interface{ Stats() kafka.ReaderStats })
	if !ok || time.Since(c.lastStats) < time.Second {
		return
	}
	c.lastStats = time.Now()
	c.m.lag.Set(float64(s.Stats().Lag))
}
