// Package relay moves events from the counter's Redis outbox stream to Kafka.
//
// The counter's Lua script appends one entry to the stream outbox.Stream ("hgp:outbox") in the
// same atomic step as the state change. A Relay reads the stream through a
// consumer group (so several counter replicas share it), converts every entry
// to an eventsv1.Event, writes the batch to Kafka with acks=all and only then
// acknowledges and deletes the entries. Entries another instance read but
// never acknowledged (it crashed) are claimed after an idle time and relayed
// again; the resulting duplicates are harmless because the consumer applies
// events idempotently. Entries that can never be converted go to a
// dead-letter stream with the reason and never block the outbox.
package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/highgopress/highgopress/platform/backoff"
)

// MessageWriter is the part of *kafka.Writer the relay uses. WriteMessages
// must return only after the broker acknowledged every message (a synchronous
// writer with RequiredAcks set to RequireAll, as events.NewWriter builds).
type MessageWriter interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Redis is the part of the go-redis client the relay uses.
type Redis interface {
	redis.StreamCmdable
	TxPipeline() redis.Pipeliner
	// For the liveness key (heartbeat).
	Set(ctx context.Context, key string, value any, expiration time.Duration) *redis.StatusCmd
	Exists(ctx context.Context, keys ...string) *redis.IntCmd
	Del(ctx context.Context, keys ...string) *redis.IntCmd
	redis.Scripter
}

// Relay moves outbox entries to Kafka. Create it with New and run Run in a
// goroutine (a bootstrap.Component worker).
type Relay struct {
	logger  *slog.Logger
	rdb     Redis
	w       MessageWriter
	o       options
	m       *metrics
	lastLen time.Time
}

// New returns a Relay reading the outbox through rdb and writing to w.
func New(logger *slog.Logger, rdb Redis, w MessageWriter, opts ...Option) *Relay {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if o.consumer == "" {
		o.consumer = defaultConsumerName()
	}
	return &Relay{
		logger: logger.With("component", "relay", "consumer", o.consumer),
		rdb:    rdb,
		w:      w,
		o:      o,
		m:      newMetrics(o.registerer),
	}
}

func defaultConsumerName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "relay"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// ConsumerName returns this instance's name in the stream consumer group.
func (r *Relay) ConsumerName() string { return r.o.consumer }

// HeartbeatKey is the liveness key of the relay named consumer on stream:
// it exists while the relay runs (refreshed every third of its TTL) and is
// deleted when Run returns.
func HeartbeatKey(stream, consumer string) string { return stream + ":alive:" + consumer }

// releaseHeartbeat deletes a liveness key only while it still holds this
// run's token: a restarted instance that already took the name back keeps
// its key when the old run's stop comes late.
var releaseHeartbeat = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// heartbeat keeps this relay's liveness key alive until ctx ends, then
// deletes it (if it is still this run's), so that the others may claim what
// it left pending at once.
func (r *Relay) heartbeat(ctx context.Context, token string) {
	key := HeartbeatKey(r.o.stream, r.o.consumer)
	t := time.NewTicker(r.o.heartbeatTTL / 3)
	defer t.Stop()
	// Run wrote the key first; from here on it is refreshed every third of
	// its lifetime.
	for {
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = releaseHeartbeat.Run(dctx, r.rdb, []string{key}, token).Err()
			cancel()
			return
		case <-t.C:
			if err := r.rdb.Set(ctx, key, token, r.o.heartbeatTTL).Err(); err != nil && ctx.Err() == nil {
				r.fail("heartbeat", err)
			}
		}
	}
}

// Run relays until ctx is cancelled; it returns nil then. Failures of Redis
// or Kafka are logged, counted and retried with backoff; they never end Run.
func (r *Relay) Run(ctx context.Context) error {
	// The liveness key first, so that no other relay takes this one for
	// dead while it resumes its pending entries.
	var tok [8]byte
	_, _ = rand.Read(tok[:])
	token := hex.EncodeToString(tok[:])
	if err := r.rdb.Set(ctx, HeartbeatKey(r.o.stream, r.o.consumer), token, r.o.heartbeatTTL).Err(); err != nil && ctx.Err() == nil {
		r.fail("heartbeat", err) // the heartbeat goroutine retries at its next tick
	}
	hbCtx, stopHeartbeat := context.WithCancel(ctx)
	hbDone := make(chan struct{})
	go func() { defer close(hbDone); r.heartbeat(hbCtx, token) }()
	defer func() { stopHeartbeat(); <-hbDone }()

	b := r.newBackoff()
	for {
		err := r.ensureGroup(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		r.fail("group", err)
		if !b.Wait(ctx) {
			return nil
		}
	}
	b.Reset()
	ownPending := true // first re-read what this consumer name left pending
	var lastClaim, lastDead time.Time
	for ctx.Err() == nil {
		var (
			entries []redis.XMessage
			err     error
		)
		switch {
		case !ownPending && time.Since(lastDead) >= r.o.heartbeatTTL/2:
			lastDead = time.Now()
			entries, err = r.claimDead(ctx)
		case time.Since(lastClaim) >= r.o.claimInterval:
			lastClaim = time.Now()
			entries, err = r.claim(ctx)
		case ownPending:
			entries, err = r.read(ctx, "0")
			if err == nil && len(entries) == 0 {
				ownPending = false
				continue
			}
		default:
			entries, err = r.read(ctx, ">")
		}
		if err == nil && len(entries) > 0 {
			err = r.process(ctx, entries)
			if err != nil {
				ownPending = true // acknowledgement failed: entries stay ours
			}
		}
		r.sampleDepth(ctx)
		if err != nil && strings.Contains(err.Error(), "NOGROUP") {
			// The stream and its group are gone (Redis lost its data:
			// FLUSHALL, a restart without persistence). Recreate the group
			// at the start of the new stream, so entries appended since are
			// relayed.
			if gerr := r.ensureGroup(ctx); gerr == nil {
				r.logger.Warn("relay: the outbox consumer group was missing and was created again", "stream", r.o.stream, "group", r.o.group)
				ownPending = false
				continue
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !b.Wait(ctx) {
				return nil
			}
			continue
		}
		b.Reset()
	}
	return nil
}

// ensureGroup creates the consumer group at the start of the stream, so
// entries appended before any relay ran are relayed too.
func (r *Relay) ensureGroup(ctx context.Context) error {
	err := r.rdb.XGroupCreateMkStream(ctx, r.o.stream, r.o.group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create group %s on %s: %w", r.o.group, r.o.stream, err)
	}
	return nil
}

func (r *Relay) read(ctx context.Context, from string) ([]redis.XMessage, error) {
	block := r.o.block
	if from != ">" {
		block = -1 // pending entries: never block
	}
	out, err := r.readOnce(ctx, from, r.o.batch, block)
	if err != nil || from != ">" || len(out) == 0 || len(out) >= r.o.batch || r.o.linger <= 0 {
		return out, err
	}
	// Linger: a short wait lets more entries arrive, so one Kafka request
	// carries more events (fewer requests, less broker CPU per event) at
	// the cost of a few milliseconds of pipeline latency, never of client
	// latency.
	t := time.NewTimer(r.o.linger)
	select {
	case <-ctx.Done():
		t.Stop()
		return out, nil
	case <-t.C:
	}
	more, err := r.readOnce(ctx, from, r.o.batch-len(out), -1)
	if err != nil {
		// What was read first is pending for this consumer and goes out
		// now; the failed read is retried with the next one.
		return out, nil
	}
	return append(out, more...), nil
}

// readOnce is one XREADGROUP of up to count entries (block < 0: do not
// block).
func (r *Relay) readOnce(ctx context.Context, from string, count int, block time.Duration) ([]redis.XMessage, error) {
	res, err := r.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group:    r.o.group,
		Consumer: r.o.consumer,
		Streams:  []string{r.o.stream, from},
		Count:    int64(count),
		Block:    block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		r.fail("read", err)
		return nil, fmt.Errorf("read %s: %w", r.o.stream, err)
	}
	var out []redis.XMessage
	for _, s := range res {
		out = append(out, s.Messages...)
	}
	return out, nil
}

// claim takes over entries that other consumers read but did not
// acknowledge within the claim idle time.
func (r *Relay) claim(ctx context.Context) ([]redis.XMessage, error) {
	msgs, _, err := r.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream:   r.o.stream,
		Group:    r.o.group,
		Consumer: r.o.consumer,
		MinIdle:  r.o.claimIdle,
		Start:    "0-0",
		Count:    int64(r.o.batch),
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		r.fail("claim", err)
		return nil, fmt.Errorf("claim on %s: %w", r.o.stream, err)
	}
	if len(msgs) > 0 {
		r.logger.Info("claimed pending outbox entries", "count", len(msgs))
	}
	return msgs, nil
}

// claimDead takes over the pending entries of relays that are dead: their
// liveness key expired (or never existed: a relay of an older version) and
// they have not touched the group for as long as the key lives. A live
// relay's pending entries are never taken here, whatever their age (the
// claim idle time of claim is the last resort for a relay stuck alive).
// XCLAIM's minimum idle time makes concurrent claimers take each entry
// once.
func (r *Relay) claimDead(ctx context.Context) ([]redis.XMessage, error) {
	consumers, err := r.rdb.XInfoConsumers(ctx, r.o.stream, r.o.group).Result()
	if err != nil {
		r.fail("claim_dead", err)
		return nil, fmt.Errorf("consumers of %s: %w", r.o.stream, err)
	}
	for _, c := range consumers {
		if c.Name == r.o.consumer || c.Pending == 0 || c.Idle < r.o.heartbeatTTL {
			continue
		}
		alive, err := r.rdb.Exists(ctx, HeartbeatKey(r.o.stream, c.Name)).Result()
		if err != nil {
			r.fail("claim_dead", err)
			return nil, fmt.Errorf("liveness of relay %s: %w", c.Name, err)
		}
		if alive == 1 {
			continue
		}
		pending, err := r.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: r.o.stream, Group: r.o.group, Start: "-", End: "+", Count: int64(r.o.batch), Consumer: c.Name,
		}).Result()
		if err != nil {
			r.fail("claim_dead", err)
			return nil, fmt.Errorf("pending entries of relay %s: %w", c.Name, err)
		}
		if len(pending) == 0 {
			continue
		}
		ids := make([]string, len(pending))
		for i, p := range pending {
			ids[i] = p.ID
		}
		msgs, err := r.rdb.XClaim(ctx, &redis.XClaimArgs{
			Stream: r.o.stream, Group: r.o.group, Consumer: r.o.consumer, MinIdle: r.o.heartbeatTTL / 2, Messages: ids,
		}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			r.fail("claim_dead", err)
			return nil, fmt.Errorf("claim entries of relay %s: %w", c.Name, err)
		}
		if len(msgs) > 0 {
			r.m.claimedDead.Add(float64(len(msgs)))
			r.logger.Info("claimed the pending outbox entries of a dead relay", "dead", c.Name, "count", len(msgs), "idle", c.Idle)
			return msgs, nil
		}
	}
	return nil, nil
}

// process relays one batch: dead-letters what cannot be converted, writes
// the rest to Kafka (retrying until acknowledged or ctx ends), then
// acknowledges and deletes the entries.
func (r *Relay) process(ctx context.Context, entries []redis.XMessage) error {
	msgs := make([]kafka.Message, 0, len(entries))
	ids := make([]string, 0, len(entries))
	var dead []redis.XMessage
	var gone []string // already deleted from the stream (nil values in the PEL)
	for _, e := range entries {
		if len(e.Values) == 0 {
			gone = append(gone, e.ID)
			continue
		}
		msg, err := entryMessage(e.ID, e.Values)
		if err != nil {
			e.Values = withReason(e.Values, err.Error())
			dead = append(dead, e)
			continue
		}
		msgs = append(msgs, msg)
		ids = append(ids, e.ID)
	}
	if len(dead) > 0 {
		if err := r.deadLetter(ctx, dead); err != nil {
			return err
		}
	}
	if len(gone) > 0 {
		if err := r.rdb.XAck(ctx, r.o.stream, r.o.group, gone...).Err(); err != nil {
			r.fail("ack", err)
			return fmt.Errorf("ack deleted entries: %w", err)
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	b := r.newBackoff()
	pctx, endSpan := startProduce(ctx, r.w, msgs)
	for {
		start := time.Now()
		err := r.w.WriteMessages(pctx, msgs...)
		if err == nil {
			endSpan(nil)
			r.m.writeTime.Observe(time.Since(start).Seconds())
			break
		}
		if ctx.Err() != nil {
			endSpan(err)
			return ctx.Err() // entries stay pending; the next start relays them again
		}
		r.fail("kafka_write", err)
		if !b.Wait(ctx) {
			endSpan(err)
			return ctx.Err()
		}
	}
	if err := r.ackDelete(ctx, ids); err != nil {
		return err
	}
	now := time.Now()
	for _, id := range ids {
		if _, at, err := Version(id); err == nil {
			r.m.latency.Observe(now.Sub(at).Seconds())
		}
	}
	r.m.relayed.Add(float64(len(ids)))
	return nil
}

// ackDelete acknowledges and deletes relayed entries in one MULTI.
func (r *Relay) ackDelete(ctx context.Context, ids []string) error {
	pipe := r.rdb.TxPipeline()
	pipe.XAck(ctx, r.o.stream, r.o.group, ids...)
	pipe.XDel(ctx, r.o.stream, ids...)
	if _, err := pipe.Exec(ctx); err != nil {
		r.fail("ack", err)
		return fmt.Errorf("ack relayed entries: %w", err)
	}
	return nil
}

func withReason(values map[string]any, reason string) map[string]any {
	out := make(map[string]any, len(values)+1)
	for k, v := range values {
		out[k] = v
	}
	out["reason"] = reason
	return out
}

// deadLetter copies entries (with their reason) to the dead-letter stream,
// then acknowledges and deletes them. A crash in between leaves a duplicate
// dead letter, never a lost one.
func (r *Relay) deadLetter(ctx context.Context, dead []redis.XMessage) error {
	pipe := r.rdb.TxPipeline()
	ids := make([]string, 0, len(dead))
	for _, e := range dead {
		values := e.Values
		values["source_id"] = e.ID
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: r.o.deadLetter, Values: values})
		ids = append(ids, e.ID)
		r.logger.Warn("outbox entry dead-lettered", "id", e.ID, "reason", values["reason"])
	}
	if _, err := pipe.Exec(ctx); err != nil {
		r.fail("dead_letter", err)
		return fmt.Errorf("dead-letter %d entries: %w", len(dead), err)
	}
	if err := r.ackDelete(ctx, ids); err != nil {
		return err
	}
	r.m.deadLetters.Add(float64(len(dead)))
	return nil
}

func (r *Relay) sampleDepth(ctx context.Context) {
	if time.Since(r.lastLen) < r.o.depthInterval {
		return
	}
	r.lastLen = time.Now()
	n, err := r.rdb.XLen(ctx, r.o.stream).Result()
	if err != nil {
		if ctx.Err() == nil {
			r.fail("depth", err)
		}
		return
	}
	r.m.depth.Set(float64(n))
	r.sampleOldest(ctx)
}

func (r *Relay) fail(op string, err error) {
	r.m.errors.WithLabelValues(op).Inc()
	r.logger.Warn("relay operation failed; retrying", "op", op, "err", err)
}

func (r *Relay) newBackoff() *backoff.Backoff { return backoff.New(r.o.backoffMin, r.o.backoffMax) }
