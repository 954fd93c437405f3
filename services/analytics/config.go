package analytics

import (
	"time"

	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/services/analytics/redisstore"
	"github.com/highgopress/highgopress/services/analytics/watch"
)

// DefaultAddr is the analytics listen address (HGP_ANALYTICS_ADDR).
const DefaultAddr = "127.0.0.1:8084"

// DefaultGroup is the analytics consumer group (HGP_ANALYTICS_GROUP).
const DefaultGroup = "highgopress-analytics"

// DefaultRedisAddr is the Redis analytics uses when HGP_REDIS_ADDR is unset.
const DefaultRedisAddr = "127.0.0.1:6379"

// Config is the analytics configuration; ConfigFrom reads it from the
// HGP_* variables (see docs/analytics.md and README).
type Config struct {
	Addr         string        // HGP_ANALYTICS_ADDR
	Redis        config.Redis  // HGP_REDIS_ADDR, HGP_REDIS_PASSWORD, HGP_REDIS_DB
	RedisTimeout time.Duration // HGP_ANALYTICS_REDIS_TIMEOUT
	// Kafka is where events are read from and dead letters go
	// (HGP_KAFKA_BROKERS, HGP_KAFKA_TOPIC, HGP_KAFKA_DLQ_TOPIC); without
	// brokers analytics serves what Redis holds and ingests nothing.
	Kafka          config.Kafka
	Group          string        // HGP_ANALYTICS_GROUP
	SessionTimeout time.Duration // HGP_KAFKA_SESSION_TIMEOUT
	BatchMax       int           // HGP_ANALYTICS_BATCH_MAX
	BatchWait      time.Duration // HGP_ANALYTICS_BATCH_WAIT

	KeyPrefix   string        // HGP_ANALYTICS_KEY_PREFIX
	SnapshotTTL time.Duration // HGP_ANALYTICS_SNAPSHOT_TTL
	Freshness   time.Duration // HGP_ANALYTICS_FRESHNESS

	WatchPerClient   int           // HGP_ANALYTICS_WATCH_PER_CLIENT
	WatchMax         int           // HGP_ANALYTICS_WATCH_MAX
	WatchBuffer      int           // HGP_ANALYTICS_WATCH_BUFFER
	WatchInterval    time.Duration // HGP_ANALYTICS_WATCH_INTERVAL
	WatchPoll        time.Duration // HGP_ANALYTICS_WATCH_POLL
	WatchSendTimeout time.Duration // HGP_ANALYTICS_WATCH_SEND_TIMEOUT
}

// ConfigFrom reads the configuration; problems are recorded in r, each
// naming its variable.
func ConfigFrom(r *config.Reader) Config {
	return Config{
		Addr:           r.String("HGP_ANALYTICS_ADDR", DefaultAddr),
		Redis:          config.RedisFrom(r, DefaultRedisAddr),
		RedisTimeout:   r.Duration("HGP_ANALYTICS_REDIS_TIMEOUT", 3*time.Second, 10*time.Millisecond, time.Minute),
		Kafka:          config.KafkaFrom(r),
		Group:          r.String("HGP_ANALYTICS_GROUP", DefaultGroup),
		SessionTimeout: r.Duration("HGP_KAFKA_SESSION_TIMEOUT", 10*time.Second, time.Second, 5*time.Minute),
		BatchMax:       r.Int("HGP_ANALYTICS_BATCH_MAX", 2000, 1, 100000),
		BatchWait:      r.Duration("HGP_ANALYTICS_BATCH_WAIT", 20*time.Millisecond, time.Millisecond, time.Minute),

		KeyPrefix:   r.String("HGP_ANALYTICS_KEY_PREFIX", redisstore.DefaultPrefix),
		SnapshotTTL: r.Duration("HGP_ANALYTICS_SNAPSHOT_TTL", redisstore.DefaultSnapshotTTL, time.Second, 24*time.Hour),
		Freshness:   r.Duration("HGP_ANALYTICS_FRESHNESS", redisstore.DefaultFreshness, 0, time.Minute),

		WatchPerClient:   r.Int("HGP_ANALYTICS_WATCH_PER_CLIENT", watch.DefaultMaxPerClient, 1, 1<<20),
		WatchMax:         r.Int("HGP_ANALYTICS_WATCH_MAX", watch.DefaultMaxTotal, 1, 1<<24),
		WatchBuffer:      r.Int("HGP_ANALYTICS_WATCH_BUFFER", watch.DefaultBuffer, 1, 1024),
		WatchInterval:    r.Duration("HGP_ANALYTICS_WATCH_INTERVAL", watch.DefaultInterval, 10*time.Millisecond, time.Minute),
		WatchPoll:        r.Duration("HGP_ANALYTICS_WATCH_POLL", watch.DefaultPoll, 100*time.Millisecond, time.Hour),
		WatchSendTimeout: r.Duration("HGP_ANALYTICS_WATCH_SEND_TIMEOUT", DefaultSendTimeout, 100*time.Millisecond, 10*time.Minute),
	}
}

// DefaultSendTimeout bounds one message sent on a watch stream.
const DefaultSendTimeout = 10 * time.Second

func (c Config) options() []Option {
	return []Option{
		WithStoreOptions(redisstore.WithPrefix(c.KeyPrefix), redisstore.WithSnapshotTTL(c.SnapshotTTL), redisstore.WithFreshness(c.Freshness)),
		WithWatchOptions(watch.WithLimits(c.WatchPerClient, c.WatchMax), watch.WithBuffer(c.WatchBuffer),
			watch.WithInterval(c.WatchInterval), watch.WithPoll(c.WatchPoll)),
		WithSendTimeout(c.WatchSendTimeout),
	}
}
