package redisstore

import (
	"runtime"
	"time"
)

// Option configures a Store.
type Option func(*options)

type options struct {
	batching       bool
	workers        int
	batchMax       int
	idempotencyTTL time.Duration
	maxMetrics     int
	outboxMaxLen   int64
	durable        bool
	settleDelay    time.Duration
	absentTTL      time.Duration
	cluster        bool
}

// DefaultAbsentTTL is how long an absent entry (see AbsentField) lives.
// Within it, reads of the item or user cost one Redis lookup; after it, the
// next read asks the durable record again. It bounds what anonymous reads
// of made-up ids can make Redis hold: (reads per second) × (items per
// read) × DefaultAbsentTTL small hashes at most.
const DefaultAbsentTTL = 10 * time.Second

// DefaultIdempotencyTTL is how long an Increment's idempotency record lives.
const DefaultIdempotencyTTL = 24 * time.Hour

// DefaultMaxMetrics is the default largest number of distinct metrics (hash
// fields besides "likes") one item may have.
const DefaultMaxMetrics = 32

// DefaultBatchMax is the default largest number of commands in one pipeline.
const DefaultBatchMax = 128

// DefaultWorkers is the default number of batching workers: two per CPU,
// so one pipeline can be on the wire while the next one is being filled.
func DefaultWorkers() int { return 2 * runtime.GOMAXPROCS(0) }

func defaultOptions() options {
	return options{
		batching:       true,
		workers:        DefaultWorkers(),
		batchMax:       DefaultBatchMax,
		idempotencyTTL: DefaultIdempotencyTTL,
		maxMetrics:     DefaultMaxMetrics,
		absentTTL:      DefaultAbsentTTL,
	}
}

// WithBatching turns batching of concurrent commands into shared pipelines
// on or off (default on).
func WithBatching(on bool) Option { return func(o *options) { o.batching = on } }

// WithWorkers sets the number of batching workers (values < 1 are ignored).
func WithWorkers(n int) Option {
	return func(o *options) {
		if n >= 1 {
			o.workers = n
		}
	}
}

// WithBatchMax sets the largest number of commands per pipeline (values < 1
// are ignored). One caller's commands always go together, so a single large
// read may exceed it.
func WithBatchMax(n int) Option {
	return func(o *options) {
		if n >= 1 {
			o.batchMax = n
		}
	}
}

// WithIdempotencyTTL sets how long Increment idempotency records live
// (values below one second are ignored).
func WithIdempotencyTTL(d time.Duration) Option {
	return func(o *options) {
		if d >= time.Second {
			o.idempotencyTTL = d
		}
	}
}

// WithMaxMetrics sets the largest number of distinct metrics (besides
// likes) one item may have (default 32; values < 1 are ignored). An
// Increment that would add one more fails with domain.ErrTooManyMetrics and
// changes nothing; metrics the item already has can always be incremented.
func WithMaxMetrics(n int) Option {
	return func(o *options) {
		if n >= 1 {
			o.maxMetrics = n
		}
	}
}

// WithOutboxMaxLen bounds the outbox stream: every append trims it to about
// n entries (XADD MAXLEN ~ n; Redis trims whole stream nodes, so the stream
// may hold up to ~100 more). The default 0 never trims, which is what the
// relay needs: a trimmed entry that was not relayed yet is lost for
// downstream consumers. Use it only where nothing relays the outbox (the
// standalone mode until it embeds Kafka). Values < 0 are ignored.
func WithOutboxMaxLen(n int64) Option {
	return func(o *options) {
		if n >= 0 {
			o.outboxMaxLen = n
		}
	}
}

// WithDurable says whether a durable record (MySQL) can rebuild state that
// is missing from Redis (default false). With it, every operation on an
// item or user whose hash lacks LoadedField fails with a
// *domain.NotLoadedError and changes nothing, until SeedItem or SeedUser
// installed the state; without it the scripts mark such state loaded
// themselves (Redis is the only truth).
func WithDurable(on bool) Option { return func(o *options) { o.durable = on } }

// WithSettleDelay queues every rebuilt item and user for settling d after
// the rebuild (default 0: rebuilds are not queued). Set it only where a
// settle worker runs (package settle): while state is queued its writes
// record what they touched. Values < 0 are ignored.
func WithSettleDelay(d time.Duration) Option {
	return func(o *options) {
		if d >= 0 {
			o.settleDelay = d
		}
	}
}

// WithAbsentTTL sets how long an absent entry lives (default
// DefaultAbsentTTL; 0 disables them: a read that finds nothing in the
// durable record then installs nothing and the next read asks again;
// values < 0 are ignored).
func WithAbsentTTL(d time.Duration) Option {
	return func(o *options) {
		if d >= 0 {
			o.absentTTL = d
		}
	}
}

// WithCluster selects the Redis Cluster key layout (see ClusterShards):
// every item's keys and its outbox shard share one hash slot. Follows
// (two users' keys) and rebuilding from a durable record (the settle
// queue) are not supported in it yet: SetFollow returns
// domain.ErrUnsupported and the counter refuses WithDurable.
func WithCluster(on bool) Option { return func(o *options) { o.cluster = on } }
