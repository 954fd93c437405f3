package counter

import (
	"time"

	"github.com/highgopress/highgopress/services/counter/app"
	"github.com/highgopress/highgopress/services/counter/redisstore"
	"github.com/highgopress/highgopress/services/counter/watch"
)

// Option configures a Counter built with New.
type Option func(*options)

type options struct {
	batching        bool
	workers         int
	batchMax        int
	cacheTTL        time.Duration
	maxMessageBytes int
	idempotencyTTL  time.Duration
	maxMetrics      int
	outboxMaxLen    int64
	// requireNoEviction makes Prepare fail unless Redis's
	// maxmemory-policy is noeviction.
	requireNoEviction bool
	// durable rebuilds state missing from Redis; nil: Redis is the only truth.
	durable app.Durable
	// settleDelay queues rebuilds for settling (0: not queued).
	settleDelay time.Duration
	// redisTimeout bounds every store call of a request (0: no bound of
	// the counter's own; the Redis client's timeouts still apply).
	redisTimeout time.Duration
	// loadTimeout bounds every snapshot load from the durable record (0:
	// only the rebuild's own bound, app.DefaultLoadTimeout).
	loadTimeout time.Duration
	// watch configures WatchCounts' fan-out (package watch).
	watch []watch.Option
	// watchSendTimeout bounds each WatchCounts message's write.
	watchSendTimeout time.Duration
	// cluster selects the Redis Cluster key layout.
	cluster bool
}

// DefaultMaxMessageBytes is the largest request message accepted (after
// decompression).
const DefaultMaxMessageBytes = 256 << 10

// SendMaxBytes bounds every response message. The largest legitimate one, a
// GetCounts of 500 items with the most metrics allowed (256) in JSON, is
// about 8 MiB.
const SendMaxBytes = 16 << 20

func defaultOptions() options {
	return options{
		batching:        true,
		workers:         redisstore.DefaultWorkers(),
		batchMax:        redisstore.DefaultBatchMax,
		cacheTTL:        app.DefaultCacheTTL,
		maxMessageBytes: DefaultMaxMessageBytes,
		idempotencyTTL:  redisstore.DefaultIdempotencyTTL,
		maxMetrics:      redisstore.DefaultMaxMetrics,

		watchSendTimeout: DefaultWatchSendTimeout,
	}
}

// DefaultWatchSendTimeout is the default of WithWatchSendTimeout
// (HGP_COUNTER_WATCH_SEND_TIMEOUT).
const DefaultWatchSendTimeout = 10 * time.Second

// WithWatch configures WatchCounts' fan-out: coalescing interval and
// stream caps (watch.WithInterval, WithMaxStreams, WithMaxPerClient).
func WithWatch(opts ...watch.Option) Option {
	return func(o *options) { o.watch = append(o.watch, opts...) }
}

// WithWatchSendTimeout sets how long one WatchCounts message may take to
// be written before the stream is dropped with ResourceExhausted (0: no
// bound).
func WithWatchSendTimeout(d time.Duration) Option {
	return func(o *options) { o.watchSendTimeout = d }
}

// WithBatching turns batching of concurrent Redis commands into shared
// pipelines on or off (HGP_COUNTER_BATCHING, default on).
func WithBatching(on bool) Option { return func(o *options) { o.batching = on } }

// WithWorkers sets the number of batching workers (HGP_COUNTER_WORKERS,
// default 2×GOMAXPROCS).
func WithWorkers(n int) Option { return func(o *options) { o.workers = n } }

// WithBatchMax sets the largest number of commands per pipeline
// (HGP_COUNTER_BATCH_MAX, default 128).
func WithBatchMax(n int) Option { return func(o *options) { o.batchMax = n } }

// WithCacheTTL sets how long read counts are cached in memory
// (HGP_COUNTER_CACHE_TTL, default 100ms; 0 disables the cache).
func WithCacheTTL(d time.Duration) Option { return func(o *options) { o.cacheTTL = d } }

// WithMaxMessageBytes sets the largest accepted request message after
// decompression (HGP_MAX_MESSAGE_BYTES, default 256 KiB; values < 1 are
// ignored). Larger ones fail with ResourceExhausted before being decoded;
// a gzip-compressed one is inflated by at most n+1 bytes before that.
func WithMaxMessageBytes(n int) Option {
	return func(o *options) {
		if n >= 1 {
			o.maxMessageBytes = n
		}
	}
}

// WithIdempotencyTTL sets how long Increment idempotency records live
// (default 24h).
func WithIdempotencyTTL(d time.Duration) Option { return func(o *options) { o.idempotencyTTL = d } }

// MaxMetricsLimit is the largest value HGP_COUNTER_MAX_METRICS accepts; it
// keeps the largest response (see SendMaxBytes) bounded.
const MaxMetricsLimit = 256

// WithMaxMetrics sets the largest number of distinct metrics (besides
// likes) one item may have (HGP_COUNTER_MAX_METRICS, default 32). An
// Increment that would add one more fails with ResourceExhausted.
func WithMaxMetrics(n int) Option { return func(o *options) { o.maxMetrics = n } }

// WithOutboxMaxLen makes every write trim the outbox stream to about n
// entries (XADD MAXLEN ~ n; HGP_COUNTER_OUTBOX_MAXLEN). The default 0 never
// trims: entries trimmed before the relay moved them to Kafka are lost
// downstream. Only for deployments where nothing relays the outbox (no
// HGP_KAFKA_BROKERS).
func WithOutboxMaxLen(n int64) Option { return func(o *options) { o.outboxMaxLen = n } }

// WithRequireNoEviction makes Prepare fail when Redis's maxmemory-policy is
// not noeviction (HGP_COUNTER_REQUIRE_NOEVICTION, default false: Prepare
// only logs a warning).
func WithRequireNoEviction(on bool) Option { return func(o *options) { o.requireNoEviction = on } }

// WithDurable makes the counter rebuild an item's or a user's state that is
// missing from Redis (eviction, restart without persistence, FLUSHALL) from
// the durable record before serving it (HGP_MYSQL_DSN; see durable.Store
// and docs/counter.md, "Rebuild from MySQL"). Without it (the default)
// Redis is the only truth.
func WithDurable(d app.Durable) Option { return func(o *options) { o.durable = d } }

// WithSettleDelay queues every rebuilt item and user for settling d after
// the rebuild (default 0: not queued). Only useful with WithDurable and a
// settle.Worker running (Build starts one when Kafka is configured).
func WithSettleDelay(d time.Duration) Option { return func(o *options) { o.settleDelay = d } }

// WithRedisTimeout bounds every call the use cases make to Redis by d, or
// by the request's deadline when that is earlier (Build: the value of
// HGP_COUNTER_REDIS_TIMEOUT, default DefaultRedisTimeout; New: 0, no bound
// beyond the client's own timeouts). A call that runs out of the budget
// fails with Unavailable (a write may still have been applied: retrying it
// is safe), one that runs out of the request's deadline with
// DeadlineExceeded. Values < 0 are ignored.
func WithRedisTimeout(d time.Duration) Option {
	return func(o *options) {
		if d >= 0 {
			o.redisTimeout = d
		}
	}
}

// WithLoadTimeout bounds every snapshot load of a rebuild from the durable
// record (WithDurable), the catch-up wait it starts with included (Build:
// HGP_COUNTER_REBUILD_WAIT + HGP_COUNTER_MYSQL_TIMEOUT). A load that runs
// out of it fails the request with Unavailable and seeds nothing. 0 (the
// default) leaves only the rebuild's own bound (10s). Values < 0 are ignored.
func WithLoadTimeout(d time.Duration) Option {
	return func(o *options) {
		if d >= 0 {
			o.loadTimeout = d
		}
	}
}

// WithCluster selects the Redis Cluster key layout (rdb is then a
// *redis.ClusterClient): every item's keys and its outbox shard share a
// hash slot (redisstore.ClusterShards streams). Follows answer
// Unimplemented and WithDurable is refused in it (docs/counter.md, "Redis
// Cluster").
func WithCluster(on bool) Option { return func(o *options) { o.cluster = on } }
