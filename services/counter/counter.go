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
	"runtime"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

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
	"github.com/highgopress/highgopress/services/counter/outbox"
	"github.com/highgopress/highgopress/services/counter/reconcile"
	"github.com/highgopress/highgopress/services/counter/redisstore"
	"github.com/highgopress/highgopress/services/counter/relay"
	"github.com/highgopress/highgopress/services/counter/settle"
	"github.com/highgopress/highgopress/services/counter/watch"
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
	// hub fans changes out to WatchCounts streams (nil when the Redis
	// client cannot subscribe).
	hub *watch.Hub
	// inflated counts bytes produced by gzip decompression of requests.
	inflated atomic.Int64
	// writes refuses writes to namespaces switched off at run time.
	writes writeSwitch
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
	if o.cluster && o.durable != nil {
		return nil, errors.New("counter: rebuilding from a durable record (WithDurable) needs a single Redis, not the cluster layout (WithCluster)")
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
		redisstore.WithCluster(o.cluster),
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
	c := &Counter{logger: logger, store: store, app: svc, requireNoEviction: o.requireNoEviction}
	var hopts []handler.Option
	if subs, ok := rdb.(watch.Subscriber); ok {
		c.hub = watch.New(logger.With("component", "watch"), subs, svc, o.watch...)
		hopts = append(hopts, handler.WithWatches(c.hub, o.watchSendTimeout))
	} else {
		logger.Warn("the Redis client cannot subscribe: WatchCounts answers unimplemented")
	}
	h := handler.New(logger, svc, hopts...)

	handlerOpts := []connect.HandlerOption{
		connect.WithInterceptors(identity.NewInterceptor(signer), tracecontext.NewInterceptor(), c.writes.interceptor()),
		connect.WithReadMaxBytes(o.maxMessageBytes),
		connect.WithSendMaxBytes(SendMaxBytes),
		gzipHandlerOptions(o.maxMessageBytes, &c.inflated),
		connect.WithCompressMinBytes(1024),
		// Decoding errors name the message, field and value, not Go types.
		handler.CodecOptions(),
	}
	c.server = server.New(logger, Services)
	path, ch := checkTimeout(counterv1connect.NewCounterServiceHandler(h, handlerOpts...))
	c.server.Handle(path, handler.WithResponseController(ch))
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

// Watch returns the WatchCounts fan-out (nil when the Redis client cannot
// subscribe), for statistics and tests.
func (c *Counter) Watch() *watch.Hub { return c.hub }

// Close ends the WatchCounts streams, stops accepting Redis work and waits
// until queued commands ran. It does not close the Redis client.
func (c *Counter) Close() error {
	var err error
	if c.hub != nil {
		err = c.hub.Close()
	}
	return errors.Join(err, c.store.Close())
}

// DefaultRebuildWait bounds how long a rebuild from MySQL waits for the
// consumer to apply what is in Kafka (HGP_COUNTER_REBUILD_WAIT).
const DefaultRebuildWait = time.Second

// pingTimeout bounds each start-up check: MySQL's and Redis's PING, and
// loading the scripts.
const pingTimeout = 5 * time.Second

// Build builds the counter component from configuration (HGP_* variables,
// see docs/counter.md) and checks that Redis answers. It does not serve.
//
// It reads the configuration (ConfigFrom), opens the clients (open) and
// assembles the service around them (assemble). Everything opened is added
// to one cleanup list: released in reverse order when a later step fails,
// and by the component's Close after the server and workers stopped.
func Build(ctx context.Context, logger *slog.Logger, r *config.Reader) (*bootstrap.Component, error) {
	cfg := ConfigFrom(r)
	if err := r.Err(); err != nil {
		return nil, err
	}
	closers := &bootstrap.Closers{}
	cl, err := open(ctx, cfg, closers)
	var comp *bootstrap.Component
	if err == nil {
		comp, _, err = assemble(ctx, logger, cfg, cl, closers)
	}
	if err != nil {
		_ = closers.Close()
		return nil, err
	}
	comp.Close = closers.Close
	return comp, nil
}

// clients are the counter's connections to its middleware.
type clients struct {
	// rdb is a *redis.Client, or a *redis.ClusterClient for a cluster.
	rdb redis.UniversalClient
	// sqlDB is the durable record (nil without HGP_MYSQL_DSN).
	sqlDB *sql.DB
	// events writes to the event topic (nil without HGP_KAFKA_BROKERS).
	events *kafka.Writer
}

// open opens MySQL (when configured; checked with a ping), Redis (checked
// with PING) and the Kafka writer (when configured; it connects on first
// use), adding each to closers.
func open(ctx context.Context, cfg Config, closers *bootstrap.Closers) (clients, error) {
	var cl clients
	if cfg.MySQLDSN != "" {
		sqlDB, err := durable.Open(ctx, cfg.MySQLDSN, pingTimeout)
		if err != nil {
			return cl, fmt.Errorf("counter: HGP_MYSQL_DSN: %w", err)
		}
		closers.Add(sqlDB.Close)
		cl.sqlDB = sqlDB
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
	//
	// A cluster client follows MOVED and ASK (the command did not run) and,
	// within the same budget, re-sends a command after a network error,
	// which go-redis does not let a caller turn off separately: there a
	// write whose reply was lost may answer changed=false (its state is
	// still exact). Its pool per node also holds the relays' blocking
	// reads, one per outbox shard on that node.
	ropts := redis.UniversalOptions{
		MaxRetries:  -1,
		DialTimeout: cfg.RedisTimeout, ReadTimeout: cfg.RedisTimeout, WriteTimeout: cfg.RedisTimeout,
		PoolTimeout: cfg.RedisTimeout, ContextTimeoutEnabled: true,
	}
	if cfg.Redis.Cluster {
		ropts.PoolSize = 10*runtime.GOMAXPROCS(0) + redisstore.ClusterShards + 1
	}
	cl.rdb = cfg.Redis.Client(ropts)
	closers.Add(cl.rdb.Close)
	pingCtx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := cl.rdb.Ping(pingCtx).Err(); err != nil {
		return cl, fmt.Errorf("counter: Redis at %s (HGP_REDIS_ADDR, DB %d, cluster %t) does not answer PING: %w", cfg.Redis.Addr, cfg.Redis.DB, cfg.Redis.Cluster, err)
	}

	if cfg.Kafka.Enabled() {
		cl.events = events.NewWriter(cfg.Kafka.Brokers, cfg.Kafka.Topic)
		closers.Add(cl.events.Close) // after the relay's Run returned
	}
	return cl, nil
}

// assemble wires the service around cl and prepares it (scripts loaded,
// eviction policy checked): the server, and as workers the outbox relay
// (with Kafka), the settle worker (with MySQL and Kafka) and the periodic
// reconciliation (with MySQL and HGP_RECONCILE_INTERVAL). With MySQL it
// also returns the reconciler, which `counter reconcile` runs once.
func assemble(ctx context.Context, logger *slog.Logger, cfg Config, cl clients, closers *bootstrap.Closers) (*bootstrap.Component, *reconcile.Reconciler, error) {
	signer, err := identity.NewSigner(cfg.IdentitySecret, cfg.IdentityPrevious...)
	if err != nil {
		return nil, nil, fmt.Errorf("counter: HGP_IDENTITY_SECRET: %w", err)
	}
	opts := cfg.options()
	ends := func(ctx context.Context) (map[int]int64, error) {
		return events.EndOffsets(ctx, cfg.Kafka.Brokers, cfg.Kafka.Topic)
	}
	// Missing state is rebuilt from MySQL when it is configured. With Kafka
	// configured too, a rebuild first waits (up to HGP_COUNTER_REBUILD_WAIT)
	// for the consumer to apply what Kafka holds, and is settled once the
	// events still in flight at the rebuild reached MySQL (package settle).
	var record *durable.Store
	if cl.sqlDB != nil {
		var dopts []durable.Option
		if cfg.Kafka.Enabled() && cfg.RebuildWait > 0 {
			dopts = append(dopts, durable.WithCatchUp(logger.With("component", "rebuild"), cfg.Kafka.Topic, ends, cfg.RebuildWait))
		}
		record = durable.New(cl.sqlDB, dopts...)
		opts = append(opts, WithDurable(record), WithLoadTimeout(cfg.RebuildWait+cfg.MySQLTimeout))
		if cfg.Kafka.Enabled() {
			opts = append(opts, WithSettleDelay(cfg.SettleDelay))
		} else {
			logger.Warn("HGP_KAFKA_BROKERS is not set: state rebuilt from MySQL is not settled, events on their way to MySQL at a rebuild stay missing from Redis")
		}
	}

	c, err := New(logger, cl.rdb, signer, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("counter: %w", err)
	}
	closers.Add(c.Close) // before the clients it uses are closed
	prepCtx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := c.Prepare(prepCtx); err != nil {
		return nil, nil, fmt.Errorf("counter: %w", err)
	}
	comp := &bootstrap.Component{Name: Name, Addr: cfg.Addr, Server: c.Server()}
	if w, err := liveWorker(logger, cfg, c); err != nil {
		return nil, nil, err
	} else if w != nil {
		comp.Workers = append(comp.Workers, w)
	}
	if c.hub != nil {
		// Ends the WatchCounts streams as soon as shutdown begins, so they
		// do not hold the server's drain.
		comp.Workers = append(comp.Workers, c.hub.Run)
	}
	// The outbox relay runs in every counter instance when Kafka is
	// configured; instances share the outbox through a stream consumer group.
	if cl.events != nil {
		comp.Workers = append(comp.Workers, relays(logger.With("component", "relay"), cfg, cl)...)
	}
	if record != nil && cfg.Kafka.Enabled() {
		w := settle.New(logger.With("component", "settle"), c.store, record, ends, cfg.Kafka.Topic)
		comp.Workers = append(comp.Workers, w.Run)
	}
	var rec *reconcile.Reconciler
	if record != nil {
		rec = newReconciler(logger, cfg, cl, c, record)
		if cfg.ReconcileInterval > 0 {
			comp.Workers = append(comp.Workers, func(ctx context.Context) error {
				return rec.RunEvery(ctx, cfg.ReconcileInterval, cfg.ReconcileRepair)
			})
		}
	}
	return comp, rec, nil
}

// relays are the outbox relays: one for hgp:outbox on a single Redis; on
// a cluster one per outbox shard (redisstore.ClusterOutboxStreams), plus
// one for hgp:outbox, which drains what a single Redis wrote before it was
// turned into a cluster's node (its entries keep their ids and fields).
func relays(logger *slog.Logger, cfg Config, cl clients) []func(context.Context) error {
	if !cfg.Redis.Cluster {
		return []func(context.Context) error{relay.New(logger, cl.rdb, cl.events, cfg.Relay.Options()...).Run}
	}
	streams := append(redisstore.ClusterOutboxStreams(), outbox.Stream)
	ws := make([]func(context.Context) error, len(streams))
	for i, st := range streams {
		ws[i] = relay.New(logger.With("stream", st), cl.rdb, cl.events, append(cfg.Relay.Options(), relay.WithStream(st))...).Run
	}
	return ws
}

// newReconciler returns the Redis–MySQL drift check of c's Redis against
// record. It repairs only while the pipeline is quiescent, which needs
// Kafka: without HGP_KAFKA_BROKERS nothing carries events to MySQL, so it
// only measures.
func newReconciler(logger *slog.Logger, cfg Config, cl clients, c *Counter, record *durable.Store) *reconcile.Reconciler {
	var opts []reconcile.Option
	if cfg.Kafka.Enabled() {
		ends := func(ctx context.Context) (map[int]int64, error) {
			return events.EndOffsets(ctx, cfg.Kafka.Brokers, cfg.Kafka.Topic)
		}
		opts = append(opts, reconcile.WithQuiescent(reconcile.Quiet(cl.rdb, record, cfg.Kafka.Topic, ends)))
	}
	return reconcile.New(logger, cl.rdb, c.store, record, opts...)
}

// Reconcile compares the counter's Redis with MySQL (HGP_MYSQL_DSN,
// required) once, logs the drift and repairs it unless
// HGP_RECONCILE_REPAIR=false: what `counter reconcile` runs. It reads the
// service's configuration and opens the same clients, but serves nothing
// and starts no worker.
func Reconcile(ctx context.Context, logger *slog.Logger, r *config.Reader) error {
	cfg := ConfigFrom(r)
	if cfg.MySQLDSN == "" {
		r.Check("HGP_MYSQL_DSN", errors.New("is required to reconcile"))
	}
	if err := r.Err(); err != nil {
		return err
	}
	closers := &bootstrap.Closers{}
	defer func() { _ = closers.Close() }()
	cl, err := open(ctx, cfg, closers)
	if err != nil {
		return err
	}
	// The component is assembled as Build does (the store that seeds
	// rebuilds, the quiescence check) but never run.
	_, rec, err := assemble(ctx, logger, cfg, cl, closers)
	if err != nil {
		return err
	}
	rep, n, err := rec.Once(ctx, cfg.ReconcileRepair)
	if err != nil {
		return fmt.Errorf("counter: reconcile: %w", err)
	}
	logger.Info("reconciliation", "fields", rep.Fields, "drifts", len(rep.Drifts), "abs", rep.Abs(),
		"quiescent", rep.Quiescent, "repaired", n)
	return nil
}
