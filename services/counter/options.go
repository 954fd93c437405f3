package counter

import (
	"time"

	"github.com/highgopress/highgopress/services/counter/app"
	"github.com/highgopress/highgopress/services/counter/redisstore"
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
}

// DefaultMaxMessageBytes is the largest request message accepted (after
// decompression).
const DefaultMaxMessageBytes = 256 << 10

func defaultOptions() options {
	return options{
		batching:        true,
		workers:         redisstore.DefaultWorkers(),
		batchMax:        redisstore.DefaultBatchMax,
		cacheTTL:        app.DefaultCacheTTL,
		maxMessageBytes: DefaultMaxMessageBytes,
		idempotencyTTL:  redisstore.DefaultIdempotencyTTL,
	}
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

// WithMaxMessageBytes sets the largest accepted request message
// (HGP_MAX_MESSAGE_BYTES, default 256 KiB); larger ones fail with
// ResourceExhausted before being decoded.
func WithMaxMessageBytes(n int) Option { return func(o *options) { o.maxMessageBytes = n } }

// WithIdempotencyTTL sets how long Increment idempotency records live
// (default 24h).
func WithIdempotencyTTL(d time.Duration) Option { return func(o *options) { o.idempotencyTTL = d } }
