package analytics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/highgopress/highgopress/gen/highgopress/analytics/v1/analyticsv1connect"
	"github.com/highgopress/highgopress/platform/bootstrap"
	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/services/analytics/handler"
	"github.com/highgopress/highgopress/services/analytics/ingest"
	"github.com/highgopress/highgopress/services/analytics/redisstore"
	"github.com/highgopress/highgopress/services/analytics/watch"
)

// Name is the component name, and the service's name in Consul.
const Name = "analytics"

// Services are the protobuf services analytics serves.
var Services = []string{analyticsv1connect.AnalyticsServiceName}

// MaxMessageBytes bounds a request message (the largest legitimate one, a
// TopItems with a page token, is a few hundred bytes).
const MaxMessageBytes = 16 << 10

// Client is the Redis client analytics needs: commands and pub/sub.
type Client interface {
	redis.Cmdable
	watch.Subscriber
}

// Analytics is a wired analytics service: the Redis store, the watch hub
// and a server with the AnalyticsService, health, reflection and /metrics.
type Analytics struct {
	logger *slog.Logger
	rdb    Client
	store  *redisstore.Store
	hub    *watch.Hub
	server *server.Server
	o      options
}

// New wires the service around rdb (which the caller keeps and closes). It
// does not touch Redis; see Prepare.
func New(logger *slog.Logger, rdb Client, opts ...Option) (*Analytics, error) {
	if rdb == nil {
		return nil, errors.New("analytics: a Redis client is required")
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	store := redisstore.New(logger, rdb, append([]redisstore.Option{redisstore.WithClock(o.clock)}, o.store...)...)
	src := func(ctx context.Context, k watch.Key) (watch.Ranking, error) {
		p, err := store.Top(ctx, k.Namespace, k.Window, int32(k.Limit), "")
		return watch.Ranking{Items: p.Items, AsOf: p.AsOf}, err
	}
	hub := watch.New(logger.With("component", "watch"), src, append([]watch.Option{watch.WithRegisterer(o.registerer)}, o.watch...)...)
	a := &Analytics{logger: logger, rdb: rdb, store: store, hub: hub, o: o}
	h := handler.New(logger, store, hub, o.sendTimeout)
	a.server = server.New(logger, Services)
	path, svc := analyticsv1connect.NewAnalyticsServiceHandler(h,
		connect.WithReadMaxBytes(MaxMessageBytes),
		connect.WithCompressMinBytes(1024),
	)
	a.server.Handle(path, handler.WithResponseController(svc))
	a.server.Handle("/metrics", promhttp.Handler())
	return a, nil
}

// Prepare loads the Lua scripts, which checks that Redis answers.
func (a *Analytics) Prepare(ctx context.Context) error { return a.store.LoadScripts(ctx) }

// Server returns the server.
func (a *Analytics) Server() *server.Server { return a.server }

// Handler returns the complete HTTP handler.
func (a *Analytics) Handler() http.Handler { return a.server.Handler() }

// Store returns the Redis store.
func (a *Analytics) Store() *redisstore.Store { return a.store }

// Hub returns the watch hub.
func (a *Analytics) Hub() *watch.Hub { return a.hub }

// Listen relays the store's change notifications to the watch hub until
// ctx ends (a worker).
func (a *Analytics) Listen(ctx context.Context) error {
	return watch.Listen(ctx, a.rdb, a.store.Channel(), a.hub)
}

// Close ends every watch stream and stops the computations.
func (a *Analytics) Close() error {
	a.hub.Close()
	return nil
}

// IngestConfig is where Ingest reads from.
type IngestConfig struct {
	Kafka          config.Kafka
	Group          string
	SessionTimeout time.Duration
	BatchMax       int
	BatchWait      time.Duration
}

// Ingest joins the consumer group and applies events to the windows until
// ctx ends (a worker).
func (a *Analytics) Ingest(ic IngestConfig, opts ...ingest.Option) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		sess := ic.SessionTimeout
		if sess <= 0 {
			sess = 10 * time.Second
		}
		reader := kafka.NewReader(kafka.ReaderConfig{
			Brokers:           ic.Kafka.Brokers,
			GroupID:           ic.Group,
			Topic:             ic.Kafka.Topic,
			MinBytes:          1,
			MaxBytes:          16 << 20,
			MaxWait:           100 * time.Millisecond,
			QueueCapacity:     max(100, 2*ic.BatchMax),
			CommitInterval:    0, // synchronous commits, after the batch was applied
			StartOffset:       kafka.FirstOffset,
			SessionTimeout:    sess,
			RebalanceTimeout:  sess,
			HeartbeatInterval: max(sess/10, 100*time.Millisecond),
			ReadBackoffMin:    10 * time.Millisecond,
			ReadBackoffMax:    100 * time.Millisecond,
			ErrorLogger:       events.ReaderErrorLogger(a.logger),
		})
		dlq := events.NewDLQWriter(ic.Kafka.Brokers, ic.Kafka.DLQTopic)
		opts = append([]ingest.Option{ingest.WithBatch(ic.BatchMax, ic.BatchWait), ingest.WithRegisterer(a.o.registerer)}, opts...)
		err := ingest.New(a.logger.With("component", "ingest"), reader, a.store, dlq, opts...).Run(ctx)
		return errors.Join(err, reader.Close(), dlq.Close())
	}
}

// pingTimeout bounds each start-up check.
const pingTimeout = 5 * time.Second

// open opens Redis (checked with PING), adding it to closers.
func open(ctx context.Context, cfg Config, closers *bootstrap.Closers) (*redis.Client, error) {
	rdb := redis.NewClient(&redis.Options{
		Addr: cfg.Redis.Addr, Password: cfg.Redis.Password, DB: cfg.Redis.DB, MaxRetries: -1,
		DialTimeout: cfg.RedisTimeout, ReadTimeout: cfg.RedisTimeout, WriteTimeout: cfg.RedisTimeout,
		PoolTimeout: cfg.RedisTimeout, ContextTimeoutEnabled: true,
	})
	closers.Add(rdb.Close)
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		return nil, fmt.Errorf("analytics: Redis at %s (HGP_REDIS_ADDR, DB %d) does not answer PING: %w", cfg.Redis.Addr, cfg.Redis.DB, err)
	}
	return rdb, nil
}

// Build builds the analytics component from configuration (HGP_*
// variables, see docs/analytics.md): it reads the configuration, opens
// Redis, wires the service and returns a component whose workers relay
// change notifications and, with Kafka, consume the user-actions topic in
// the analytics group. Standalone mode embeds it as it is.
func Build(ctx context.Context, logger *slog.Logger, r *config.Reader) (*bootstrap.Component, error) {
	cfg := ConfigFrom(r)
	if err := r.Err(); err != nil {
		return nil, err
	}
	closers := &bootstrap.Closers{}
	comp, err := assemble(ctx, logger, cfg, closers)
	if err != nil {
		_ = closers.Close()
		return nil, err
	}
	comp.Close = closers.Close
	return comp, nil
}

func assemble(ctx context.Context, logger *slog.Logger, cfg Config, closers *bootstrap.Closers) (*bootstrap.Component, error) {
	rdb, err := open(ctx, cfg, closers)
	if err != nil {
		return nil, err
	}
	a, err := New(logger, rdb, cfg.options()...)
	if err != nil {
		return nil, err
	}
	closers.Add(a.Close)
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := a.Prepare(pctx); err != nil {
		return nil, fmt.Errorf("analytics: %w", err)
	}
	comp := &bootstrap.Component{Name: Name, Addr: cfg.Addr, Server: a.Server(), Workers: []func(context.Context) error{a.Listen}}
	if cfg.Kafka.Enabled() {
		comp.Workers = append(comp.Workers, a.Ingest(IngestConfig{
			Kafka: cfg.Kafka, Group: cfg.Group, SessionTimeout: cfg.SessionTimeout, BatchMax: cfg.BatchMax, BatchWait: cfg.BatchWait,
		}))
		comp.Workers = append(comp.Workers, events.NewLagMonitor(logger, cfg.Kafka.Brokers, cfg.Group, cfg.Kafka.Topic).Run)
	} else {
		logger.Warn("HGP_KAFKA_BROKERS is not set: analytics serves what Redis holds and ingests nothing")
	}
	return comp, nil
}
