package counter

import (
	"errors"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/discovery"
	"github.com/highgopress/highgopress/platform/identity"
	"github.com/highgopress/highgopress/services/counter/redisstore"
	"github.com/highgopress/highgopress/services/counter/relay"
	"github.com/highgopress/highgopress/services/counter/settle"
	"github.com/highgopress/highgopress/services/counter/watch"
)

// DefaultAddr is the counter's listen address (HGP_COUNTER_ADDR).
const DefaultAddr = "127.0.0.1:8081"

// DefaultRedisAddr is the Redis the counter uses when HGP_REDIS_ADDR is
// unset: unlike the gateway and the consumer, the counter cannot run
// without one.
const DefaultRedisAddr = "127.0.0.1:6379"

// Config is the counter's configuration; ConfigFrom reads it from the
// HGP_* variables (see docs/counter.md and README).
type Config struct {
	Addr           string // HGP_COUNTER_ADDR
	IdentitySecret []byte // HGP_IDENTITY_SECRET (required): verifies the internal identity header
	// IdentityPrevious are secrets still accepted while the identity secret
	// is rotated (HGP_IDENTITY_SECRET_PREVIOUS).
	IdentityPrevious [][]byte

	Redis        config.Redis  // HGP_REDIS_ADDR (default 127.0.0.1:6379), HGP_REDIS_PASSWORD, HGP_REDIS_DB
	RedisTimeout time.Duration // HGP_COUNTER_REDIS_TIMEOUT: every Redis exchange and store call
	// MySQLDSN, when set, is the durable record missing state is rebuilt
	// from (HGP_MYSQL_DSN), with connect, read and write timeouts of
	// MySQLTimeout added where it sets none.
	MySQLDSN     string
	MySQLTimeout time.Duration // HGP_COUNTER_MYSQL_TIMEOUT
	// Kafka, when enabled, is where the outbox relay moves events
	// (HGP_KAFKA_BROKERS, HGP_KAFKA_TOPIC); rebuilds wait for and are
	// settled against it.
	Kafka       config.Kafka
	RebuildWait time.Duration // HGP_COUNTER_REBUILD_WAIT
	SettleDelay time.Duration // HGP_COUNTER_SETTLE_DELAY
	// ReconcileInterval, above zero and with MySQL configured, runs the
	// Redis–MySQL drift check (package reconcile) this often
	// (HGP_RECONCILE_INTERVAL; 0 disables it).
	ReconcileInterval time.Duration
	ReconcileRepair   bool // HGP_RECONCILE_REPAIR: repair the drift, not only measure it

	// Consul, when enabled (HGP_CONSUL_ADDR), is also where the run-time
	// settings come from (Live, liveconfig.Key("counter")).
	Consul discovery.Config
	// WritesOff are namespaces whose writes answer unavailable
	// (HGP_COUNTER_WRITES_OFF; usually set at run time).
	WritesOff []string

	Batching          bool          // HGP_COUNTER_BATCHING
	Workers           int           // HGP_COUNTER_WORKERS
	BatchMax          int           // HGP_COUNTER_BATCH_MAX
	CacheTTL          time.Duration // HGP_COUNTER_CACHE_TTL
	MaxMessageBytes   int           // HGP_MAX_MESSAGE_BYTES
	MaxMetrics        int           // HGP_COUNTER_MAX_METRICS
	OutboxMaxLen      int64         // HGP_COUNTER_OUTBOX_MAXLEN
	RequireNoEviction bool          // HGP_COUNTER_REQUIRE_NOEVICTION

	// WatchCounts: coalescing interval, caps, slow-watcher bound.
	WatchInterval     time.Duration // HGP_COUNTER_WATCH_INTERVAL
	WatchMaxStreams   int           // HGP_COUNTER_WATCH_MAX_STREAMS
	WatchMaxPerClient int           // HGP_COUNTER_WATCH_MAX_PER_CLIENT
	WatchSendTimeout  time.Duration // HGP_COUNTER_WATCH_SEND_TIMEOUT

	// Relay tunes the outbox relay (HGP_RELAY_*); its consumer name
	// defaults to relay.Identity of HGP_ADVERTISE_HOST and Addr.
	Relay relay.Config
}

// ConfigFrom reads the counter's configuration. Problems are recorded in r
// (see config.Reader.Err), each naming its variable.
func ConfigFrom(r *config.Reader) Config {
	secret, previous := identity.SecretsFrom(r)
	live := liveFrom(r)
	c := Config{
		Consul:            discovery.ConfigFrom(r),
		WritesOff:         live.WritesOff,
		Addr:              r.String("HGP_COUNTER_ADDR", DefaultAddr),
		Redis:             config.RedisFrom(r, DefaultRedisAddr),
		MySQLDSN:          r.String("HGP_MYSQL_DSN", ""),
		Kafka:             config.KafkaFrom(r),
		SettleDelay:       r.Duration("HGP_COUNTER_SETTLE_DELAY", settle.DefaultDelay, time.Millisecond, time.Hour),
		RebuildWait:       r.Duration("HGP_COUNTER_REBUILD_WAIT", DefaultRebuildWait, 0, time.Minute),
		ReconcileInterval: r.Duration("HGP_RECONCILE_INTERVAL", 0, 0, 24*time.Hour),
		ReconcileRepair:   r.Bool("HGP_RECONCILE_REPAIR", true),
		RedisTimeout:      r.Duration("HGP_COUNTER_REDIS_TIMEOUT", DefaultRedisTimeout, 10*time.Millisecond, time.Minute),
		MySQLTimeout:      r.Duration("HGP_COUNTER_MYSQL_TIMEOUT", DefaultMySQLTimeout, 10*time.Millisecond, time.Minute),

		Batching:          r.Bool("HGP_COUNTER_BATCHING", true),
		Workers:           r.Int("HGP_COUNTER_WORKERS", redisstore.DefaultWorkers(), 1, 1024),
		BatchMax:          live.BatchMax,
		CacheTTL:          live.CacheTTL,
		MaxMessageBytes:   r.Int("HGP_MAX_MESSAGE_BYTES", DefaultMaxMessageBytes, 1<<10, 64<<20),
		MaxMetrics:        r.Int("HGP_COUNTER_MAX_METRICS", redisstore.DefaultMaxMetrics, 1, MaxMetricsLimit),
		OutboxMaxLen:      int64(r.Int("HGP_COUNTER_OUTBOX_MAXLEN", 0, 0, 1<<30)),
		RequireNoEviction: r.Bool("HGP_COUNTER_REQUIRE_NOEVICTION", false),

		WatchInterval:     r.Duration("HGP_COUNTER_WATCH_INTERVAL", watch.DefaultInterval, time.Millisecond, 10*time.Second),
		WatchMaxStreams:   r.Int("HGP_COUNTER_WATCH_MAX_STREAMS", watch.DefaultMaxStreams, 1, 1_000_000),
		WatchMaxPerClient: r.Int("HGP_COUNTER_WATCH_MAX_PER_CLIENT", watch.DefaultMaxPerClient, 1, 100_000),
		WatchSendTimeout:  r.Duration("HGP_COUNTER_WATCH_SEND_TIMEOUT", DefaultWatchSendTimeout, 0, 10*time.Minute),

		Relay: relay.Config{
			Batch:        r.Int("HGP_RELAY_BATCH", relay.DefaultBatch, 1, 10000),
			Linger:       r.Duration("HGP_RELAY_LINGER", relay.DefaultLinger, 0, time.Second),
			ClaimIdle:    r.Duration("HGP_RELAY_CLAIM_IDLE", relay.DefaultClaimIdle, 100*time.Millisecond, time.Hour),
			Consumer:     r.String("HGP_RELAY_CONSUMER", ""),
			HeartbeatTTL: r.Duration("HGP_RELAY_HEARTBEAT_TTL", relay.DefaultHeartbeatTTL, time.Second, 10*time.Minute),
		},
	}
	if c.ReconcileInterval > 0 && c.MySQLDSN == "" {
		r.Check("HGP_RECONCILE_INTERVAL", errors.New("needs HGP_MYSQL_DSN: reconciliation compares Redis with MySQL"))
	}
	if c.Redis.Cluster && c.MySQLDSN != "" {
		r.Check("HGP_MYSQL_DSN", errors.New("rebuilding from MySQL, settling and reconciliation need a single Redis primary for now, "+
			"and HGP_REDIS_ADDR / HGP_REDIS_CLUSTER name a Redis Cluster: unset HGP_MYSQL_DSN or use one Redis (docs/counter.md, \"Redis Cluster\")"))
	}
	if c.Relay.Consumer == "" {
		c.Relay.Consumer = relay.Identity(r.String("HGP_ADVERTISE_HOST", ""), c.Addr)
	}
	c.IdentitySecret, c.IdentityPrevious = secret, previous
	if c.MySQLDSN != "" {
		if dsn, err := mysql.ParseDSN(c.MySQLDSN); err != nil {
			r.Check("HGP_MYSQL_DSN", fmt.Errorf("not a go-sql-driver DSN (user:pass@tcp(host:port)/db): %w", err))
		} else {
			c.MySQLDSN = boundedDSN(dsn, c.MySQLTimeout)
		}
	}
	return c
}

// options returns the New options that apply c (the durable record and
// its load budget are added by Build once MySQL is open).
func (c Config) options() []Option {
	return []Option{
		WithBatching(c.Batching),
		WithWorkers(c.Workers),
		WithBatchMax(c.BatchMax),
		WithCacheTTL(c.CacheTTL),
		WithMaxMessageBytes(c.MaxMessageBytes),
		WithMaxMetrics(c.MaxMetrics),
		WithOutboxMaxLen(c.OutboxMaxLen),
		WithCluster(c.Redis.Cluster),
		WithRequireNoEviction(c.RequireNoEviction),
		WithRedisTimeout(c.RedisTimeout),
		WithWatch(watch.WithInterval(c.WatchInterval), watch.WithMaxStreams(c.WatchMaxStreams),
			watch.WithMaxPerClient(c.WatchMaxPerClient)),
		WithWatchSendTimeout(c.WatchSendTimeout),
	}
}

// boundedDSN returns dsn with connect, read and write timeouts of d where
// it sets none: a frozen MySQL then fails an exchange after d even where no
// context deadline reaches the driver.
func boundedDSN(dsn *mysql.Config, d time.Duration) string {
	if dsn.Timeout == 0 {
		dsn.Timeout = d
	}
	if dsn.ReadTimeout == 0 {
		dsn.ReadTimeout = d
	}
	if dsn.WriteTimeout == 0 {
		dsn.WriteTimeout = d
	}
	return dsn.FormatDSN()
}
