// Package counter is the counter service: likes, generic metrics and follow
// relations kept in Redis, served over Connect, gRPC and gRPC-Web.
//
// Layers: handler (Connect port) → app (use cases, validation, read cache)
// → app.Store (domain interface) → redisstore (Lua scripts, outbox, batched
// pipelines). Build wires them from configuration; New wires them around a
// given Redis client, for tests and embedding.
package counter

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"

	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/bootstrap"
	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/platform/identity"
	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/platform/tracecontext"
	"github.com/highgopress/highgopress/services/counter/app"
	"github.com/highgopress/highgopress/services/counter/durable"
	"github.com/highgopress/highgopress/services/counter/handler"
	"github.com/highgopress/highgopress/services/counter/redisstore"
	"github.com/highgopress/highgopress/services/counter/relay"
	"github.com/highgopress/highgopress/services/counter/settle"
)

// Name is the component name.
const Name = "counter"

// Services are the protobuf services the counter serves.
var Services = []string{counterv1connect.CounterServiceName, counterv1connect.FollowServiceName}

// Counter is a wired counter service: a server with both services mounted
// over a Redis store.
type Counter struct {
	logger            *slog.Logger
	server            *server.Server
	store             *redisstore.Store
	app               *app.Service
	requireNoEviction bool
	// inflated counts bytes produced by gzip decompression of requests.
	inflated atomic.Int64
}

// New wires the service around rdb (which the caller keeps and closes) and
// signer (which verifies the internal identity header). It does not touch
// Redis; see Prepare.
//
// rdb should not retry commands (for a *redis.Client: MaxRetries -1, as
// Build sets it): a script re-sent after a lost reply runs again as a no-op
// and reports changed=false for a write that did change. New logs a warning
// when a *redis.Client retries.
func New(logger *slog.Logger, rdb redisstore.Client, signer *identity.Signer, opts ...Option) (*Counter, error) {
	if rdb == nil || signer == nil {
		return nil, errors.New("counter: a Redis client and an identity signer are required")
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if rc, ok := rdb.(interface{ Options() *redis.Options }); ok && rc.Options().MaxRetries > 0 {
		logger.Warn("the Redis client retries commands: a write whose reply was lost may be re-run and report changed=false; set MaxRetries to -1",
			"max_retries", rc.Options().MaxRetries)
	}
	store := redisstore.New(logger, rdb,
		redisstore.WithBatching(o.batching),
		redisstore.WithWorkers(o.workers),
		redisstore.WithBatchMax(o.batchMax),
		redisstore.WithIdempotencyTTL(o.idempotencyTTL),
		redisstore.WithMaxMetrics(o.maxMetrics),
		redisstore.WithOutboxMaxLen(o.outboxMaxLen),
		redisstore.WithDurable(o.durable != nil),
		redisstore.WithSettleDelay(o.settleDelay),
	)
	// The use cases see the store (and the durable record) through
	// budgets: every call is bounded, so a frozen dependency fails a
	// request instead of holding it.
	var (
		useStore  app.Store  = store
		useSeeder app.Seeder = store
		durable              = o.durable
	)
	if o.redisTimeout > 0 {
		bs := budgetedStore{s: store, b: budget{d: o.redisTimeout, what: "Redis (HGP_COUNTER_REDIS_TIMEOUT)"}}
		useStore, useSeeder = bs, bs
	}
	if durable != nil && o.loadTimeout > 0 {
		durable = budgetedDurable{d: durable, b: budget{d: o.loadTimeout, what: "MySQL (HGP_COUNTER_MYSQL_TIMEOUT)"}}
	}
	appOpts := []app.Option{app.WithCacheTTL(o.cacheTTL)}
	if durable != nil {
		appOpts = append(appOpts, app.WithDurable(durable, useSeeder))
	}
	svc := app.New(logger, useStore, appOpts...)
	h := handler.New(logger, svc)
	c := &Counter{logger: logger, store: store, app: svc, requireNoEviction: o.requireNoEviction}

	handlerOpts := []connect.HandlerOption{
		connect.WithInterceptors(identity.NewInterceptor(signer), tracecontext.NewInterceptor()),
		connect.WithReadMaxBytes(o.maxMessageBytes),
		connect.WithSendMaxBytes(SendMaxBytes),
		gzipHandlerOptions(o.maxMessageBytes, &c.inflated),
		connect.WithCompressMinBytes(1024),
		// Decoding errors name the message, field and value, not Go types.
		handler.CodecOptions(),
	}
	c.server = server.New(logger, Services)
	c.server.Handle(checkTimeout(counterv1connect.NewCounterServiceHandler(h, handlerOpts...)))
	c.server.Handle(checkTimeout(counterv1connect.NewFollowServiceHandler(h, handlerOpts...)))
	return c, nil
}

// checkTimeout rejects a malformed Connect-Timeout-Ms header with a message
// naming it (handler.CheckTimeoutHeader).
func checkTimeout(path string, h http.Handler) (string, http.Handler) {
	return path, handler.CheckTimeoutHeader(h)
}

// Prepare loads the Lua scripts (which checks that Redis answers) and
// checks Redis's maxmemory-policy: anything but noeviction is logged as a
// warning, or refused under WithRequireNoEviction.
func (c *Counter) Prepare(ctx context.Context) error {
	if err := c.store.LoadScripts(ctx); err != nil {
		return err
	}
	return c.checkEviction(ctx)
}

// Server returns the server with both services, health and reflection.
func (c *Counter) Server() *server.Server { return c.server }

// Handler returns the complete HTTP handler.
func (c *Counter) Handler() http.Handler { return c.server.Handler() }

// Store returns the Redis store (for statistics in benchmarks).
func (c *Counter) Store() *redisstore.Store { return c.store }

// App returns the use cases, for callers that embed the service in-process.
func (c *Counter) App() *app.Service { return c.app }

// Close stops accepting Redis work and waits until queued commands ran. It
// does not close the Redis client.
func (c *Counter) Close() error { return c.store.Close() }

// DefaultRebuildWait bounds how long a rebuild from MySQL waits for the
// consumer to apply what is in Kafka (HGP_COUNTER_REBUILD_WAIT).
const DefaultRebuildWait = time.Second

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

// pingTimeout bounds the start-up check of Redis.
const pingTimeout = 5 * time.Second

// Build builds the counter component from configuration (HGP_* variables,
// see docs/counter.md) and checks that Redis answers. It does not serve.
func Build(ctx context.Context, logger *slog.Logger, cfg *config.Reader) (*bootstrap.Component, error) {
	secret := cfg.Required("HGP_IDENTITY_SECRET")
	addr := cfg.String("HGP_COUNTER_ADDR", "127.0.0.1:8081")
	redisAddr := cfg.String("HGP_REDIS_ADDR", "127.0.0.1:6379")
	redisPassword := cfg.String("HGP_REDIS_PASSWORD", "")
	redisDB := cfg.Int("HGP_REDIS_DB", 0, 0, 1<<16)
	mysqlDSN := cfg.String("HGP_MYSQL_DSN", "")
	brokers := cfg.List("HGP_KAFKA_BROKERS", nil)
	topic := cfg.String("HGP_KAFKA_TOPIC", events.DefaultTopic)
	settleDelay := cfg.Duration("HGP_COUNTER_SETTLE_DELAY", settle.DefaultDelay, time.Millisecond, time.Hour)
	rebuildWait := cfg.Duration("HGP_COUNTER_REBUILD_WAIT", DefaultRebuildWait, 0, time.Minute)
	redisTimeout := cfg.Duration("HGP_COUNTER_REDIS_TIMEOUT", DefaultRedisTimeout, 10*time.Millisecond, time.Minute)
	mysqlTimeout := cfg.Duration("HGP_COUNTER_MYSQL_TIMEOUT", DefaultMySQLTimeout, 10*time.Millisecond, time.Minute)
	opts := []Option{
		WithBatching(cfg.Bool("HGP_COUNTER_BATCHING", true)),
		WithWorkers(cfg.Int("HGP_COUNTER_WORKERS", redisstore.DefaultWorkers(), 1, 1024)),
		WithBatchMax(cfg.Int("HGP_COUNTER_BATCH_MAX", redisstore.DefaultBatchMax, 1, 10_000)),
		WithCacheTTL(cfg.Duration("HGP_COUNTER_CACHE_TTL", app.DefaultCacheTTL, 0, time.Minute)),
		WithMaxMessageBytes(cfg.Int("HGP_MAX_MESSAGE_BYTES", DefaultMaxMessageBytes, 1<<10, 64<<20)),
		WithMaxMetrics(cfg.Int("HGP_COUNTER_MAX_METRICS", redisstore.DefaultMaxMetrics, 1, MaxMetricsLimit)),
		WithOutboxMaxLen(int64(cfg.Int("HGP_COUNTER_OUTBOX_MAXLEN", 0, 0, 1<<30))),
		WithRequireNoEviction(cfg.Bool("HGP_COUNTER_REQUIRE_NOEVICTION", false)),
		WithRedisTimeout(redisTimeout),
	}
	var signer *identity.Signer
	if secret != "" {
		var err error
		signer, err = identity.NewSigner([]byte(secret))
		cfg.Check("HGP_IDENTITY_SECRET", err)
	}
	if mysqlDSN != "" {
		if dsn, err := mysql.ParseDSN(mysqlDSN); err != nil {
			cfg.Check("HGP_MYSQL_DSN", fmt.Errorf("not a go-sql-driver DSN (user:pass@tcp(host:port)/db): %w", err))
		} else {
			mysqlDSN = boundedDSN(dsn, mysqlTimeout)
		}
	}
	if err := cfg.Err(); err != nil {
		return nil, err
	}

	ends := func(ctx context.Context) (map[int]int64, error) { return events.EndOffsets(ctx, brokers, topic) }
	// Missing state is rebuilt from MySQL when it is configured. With Kafka
	// configured too, a rebuild first waits (up to HGP_COUNTER_REBUILD_WAIT)
	// for the consumer to apply what Kafka holds, and is settled once the
	// events still in flight at the rebuild reached MySQL (package settle).
	var (
		sqlDB  *sql.DB
		record *durable.Store
	)
	closeDB := func() error { return nil }
	if mysqlDSN != "" {
		var err error
		if sqlDB, err = durable.Open(ctx, mysqlDSN, pingTimeout); err != nil {
			return nil, fmt.Errorf("counter: HGP_MYSQL_DSN: %w", err)
		}
		closeDB = sqlDB.Close
		var dopts []durable.Option
		if len(brokers) > 0 && rebuildWait > 0 {
			dopts = append(dopts, durable.WithCatchUp(logger.With("component", "rebuild"), topic, ends, rebuildWait))
		}
		record = durable.New(sqlDB, dopts...)
		opts = append(opts, WithDurable(record), WithLoadTimeout(rebuildWait+mysqlTimeout))
		if len(brokers) > 0 {
			opts = append(opts, WithSettleDelay(settleDelay))
		} else {
			logger.Warn("HGP_KAFKA_BROKERS is not set: state rebuilt from MySQL is not settled, events on their way to MySQL at a rebuild stay missing from Redis")
		}
	}

	// No retries: go-redis re-sends a command (or a whole pipeline) after a
	// network error, and a script whose reply was lost would run again as
	// a no-op, reporting changed=false for a write that did change. Such a
	// write fails with Unavailable instead; retrying it is safe because
	// every write is idempotent, by state or by idempotency key.
	//
	// Every exchange is bounded by HGP_COUNTER_REDIS_TIMEOUT: dialling,
	// each read and write, and waiting for a pooled connection; with
	// ContextTimeoutEnabled a caller's earlier deadline bounds its own
	// exchange too (the batcher's shared pipelines run without one, so the
	// read and write timeouts bound them). Blocking reads (the relay's
	// XREADGROUP) get their block time on top.
	rdb := redis.NewClient(&redis.Options{
		Addr: redisAddr, Password: redisPassword, DB: redisDB, MaxRetries: -1,
		DialTimeout: redisTimeout, ReadTimeout: redisTimeout, WriteTimeout: redisTimeout,
		PoolTimeout: redisTimeout, ContextTimeoutEnabled: true,
	})
	pingCtx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := rdb.Ping(pingCtx).Err(); err != nil {
		_ = rdb.Close()
		_ = closeDB()
		return nil, fmt.Errorf("counter: Redis at %s (HGP_REDIS_ADDR, DB %d) does not answer PING: %w", redisAddr, redisDB, err)
	}
	c, err := New(logger, rdb, signer, opts...)
	if err == nil {
		err = c.Prepare(pingCtx)
	}
	if err != nil {
		_ = rdb.Close()
		_ = closeDB()
		return nil, fmt.Errorf("counter: %w", err)
	}
	comp := &bootstrap.Component{
		Name:   Name,
		Addr:   addr,
		Server: c.Server(),
		Close: func() error {
			return errors.Join(c.Close(), rdb.Close(), closeDB())
		},
	}
	// The outbox relay runs in every counter instance when Kafka is
	// configured; instances share the outbox through a stream consumer group.
	rl, closeRelay, err := relay.FromConfig(logger.With("component", "relay"), rdb, cfg)
	if err != nil {
		_ = comp.Close()
		return nil, fmt.Errorf("counter: relay: %w", err)
	}
	if rl != nil {
		comp.Workers = append(comp.Workers, rl.Run)
		comp.Close = func() error { return errors.Join(c.Close(), closeRelay(), rdb.Close(), closeDB()) }
	}
	if record != nil && len(brokers) > 0 {
		w := settle.New(logger.With("component", "settle"), c.store, record, ends, topic)
		comp.Workers = append(comp.Workers, w.Run)
	}
	return comp, nil
}
