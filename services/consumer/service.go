package consumer

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/segmentio/kafka-go"

	"github.com/highgopress/highgopress/platform/bootstrap"
	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/services/consumer/migrations"
	"github.com/highgopress/highgopress/services/consumer/sink"
)

// Config is the consumer's configuration; ConfigFrom reads it from the
// environment.
type Config struct {
	Addr string // HGP_CONSUMER_ADDR: health and /metrics
	// Kafka is where events are read from and dead letters go
	// (HGP_KAFKA_BROKERS, required; HGP_KAFKA_TOPIC; HGP_KAFKA_DLQ_TOPIC).
	Kafka          config.Kafka
	Group          string        // HGP_KAFKA_GROUP
	Partitions     int           // HGP_KAFKA_PARTITIONS: used when the topic must be created
	CreateTopics   bool          // HGP_KAFKA_CREATE_TOPICS
	SessionTimeout time.Duration // HGP_KAFKA_SESSION_TIMEOUT
	DSN            string        // HGP_MYSQL_DSN (required)
	Migrate        bool          // HGP_CONSUMER_MIGRATE
	BatchMax       int           // HGP_CONSUMER_BATCH_MAX
	BatchWait      time.Duration // HGP_CONSUMER_BATCH_WAIT
	Workers        int           // HGP_CONSUMER_WORKERS: group members in this process
}

// ConfigFrom reads the configuration; problems are recorded in cfg (see
// cfg.Err), each naming its variable.
func ConfigFrom(cfg *config.Reader) Config {
	c := Config{
		Addr:           cfg.String("HGP_CONSUMER_ADDR", "127.0.0.1:8083"),
		Kafka:          config.KafkaFrom(cfg),
		Group:          cfg.String("HGP_KAFKA_GROUP", "highgopress-consumer"),
		Partitions:     cfg.Int("HGP_KAFKA_PARTITIONS", 6, 1, 4096),
		CreateTopics:   cfg.Bool("HGP_KAFKA_CREATE_TOPICS", true),
		SessionTimeout: cfg.Duration("HGP_KAFKA_SESSION_TIMEOUT", 10*time.Second, time.Second, 5*time.Minute),
		DSN:            cfg.Required("HGP_MYSQL_DSN"),
		Migrate:        cfg.Bool("HGP_CONSUMER_MIGRATE", true),
		BatchMax:       cfg.Int("HGP_CONSUMER_BATCH_MAX", 2000, 1, 100000),
		BatchWait:      cfg.Duration("HGP_CONSUMER_BATCH_WAIT", 50*time.Millisecond, time.Millisecond, time.Minute),
		Workers:        cfg.Int("HGP_CONSUMER_WORKERS", 2, 1, 64),
	}
	if !c.Kafka.Enabled() {
		cfg.Check("HGP_KAFKA_BROKERS", errors.New("is required (comma list of host:port)"))
	}
	if c.DSN != "" {
		if _, err := mysql.ParseDSN(c.DSN); err != nil {
			cfg.Check("HGP_MYSQL_DSN", fmt.Errorf("not a go-sql-driver DSN (user:pass@tcp(host:port)/db): %w", err))
		}
	}
	return c
}

// Build is the consumer's bootstrap.BuildFunc: it migrates the schema
// (unless HGP_CONSUMER_MIGRATE=false), opens MySQL and returns a component
// whose worker joins the consumer group and consumes.
func Build(ctx context.Context, logger *slog.Logger, cfg *config.Reader) (*bootstrap.Component, error) {
	c := ConfigFrom(cfg)
	if err := cfg.Err(); err != nil {
		return nil, err
	}
	svc, err := Open(ctx, logger, c)
	if err != nil {
		return nil, err
	}
	srv := server.New(logger, nil)
	srv.Handle("/metrics", promhttp.Handler())
	return &bootstrap.Component{
		Name:   "consumer",
		Addr:   c.Addr,
		Server: srv,
		// hgp_kafka_consumer_group_lag comes from the lag monitor.
		Workers: []func(context.Context) error{svc.Run, events.NewLagMonitor(logger, c.Kafka.Brokers, c.Group, c.Kafka.Topic).Run},
		Close:   svc.Close,
	}, nil
}

// Migrate applies the schema migrations of cfg's HGP_MYSQL_DSN: what
// `consumer migrate` runs.
func Migrate(ctx context.Context, logger *slog.Logger, cfg *config.Reader) error {
	dsn := cfg.Required("HGP_MYSQL_DSN")
	if err := cfg.Err(); err != nil {
		return err
	}
	_, err := migrations.Up(ctx, logger, dsn)
	return err
}

// Service is a configured consumer: an open MySQL pool and what is needed
// to join the Kafka group.
type Service struct {
	logger *slog.Logger
	cfg    Config
	db     *sql.DB
	sink   *sink.Sink
	opts   []Option
}

// Open migrates (when cfg.Migrate) and opens MySQL. Run consumes.
func Open(ctx context.Context, logger *slog.Logger, cfg Config, opts ...Option) (*Service, error) {
	if cfg.Migrate {
		if _, err := migrations.Up(ctx, logger, cfg.DSN); err != nil {
			return nil, err
		}
	}
	conn, err := OpenDB(cfg.DSN)
	if err != nil {
		return nil, err
	}
	opts = append([]Option{WithBatch(cfg.BatchMax, cfg.BatchWait)}, opts...)
	return &Service{logger: logger, cfg: cfg, db: conn, sink: sink.New(logger, conn), opts: opts}, nil
}

// OpenDB opens a MySQL pool for the sink: parameters interpolated client
// side and several statements per query allowed (the sink sends a batch's
// writes as one multi-statement query), times parsed.
func OpenDB(dsn string) (*sql.DB, error) {
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysql dsn: %w", err)
	}
	mc.InterpolateParams = true
	mc.MultiStatements = true
	mc.ParseTime = true
	connector, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	conn := sql.OpenDB(connector)
	conn.SetMaxOpenConns(16)
	conn.SetMaxIdleConns(16)
	conn.SetConnMaxLifetime(5 * time.Minute)
	return conn, nil
}

// DB returns the MySQL pool.
func (s *Service) DB() *sql.DB { return s.db }

// Run joins the consumer group with cfg.Workers members (each its own
// reader, partitions and transactions) and consumes until ctx is cancelled
// or a member fails; members leave the group and close their Kafka clients
// before Run returns.
func (s *Service) Run(ctx context.Context) error {
	if s.cfg.CreateTopics {
		tctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		for _, t := range []string{s.cfg.Kafka.Topic, s.cfg.Kafka.DLQTopic} {
			if err := events.EnsureTopic(tctx, s.cfg.Kafka.Brokers, t, s.cfg.Partitions); err != nil {
				s.logger.Warn("could not ensure topic", "topic", t, "err", err)
			}
		}
		cancel()
	}
	if err := s.markCommitted(ctx); err != nil {
		s.logger.Warn("could not record the group's committed offsets in pipeline_offsets", "err", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, max(1, s.cfg.Workers))
	for range max(1, s.cfg.Workers) {
		go func() {
			err := s.member(ctx)
			cancel() // one member failing stops the others
			errs <- err
		}()
	}
	var all []error
	for range max(1, s.cfg.Workers) {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// markCommitted records the group's committed offsets in pipeline_offsets.
// Offsets are committed only after the MySQL transaction, so every message
// below them is applied; this gives partitions that get no new message (idle
// since before the consumer wrote marks) a row too, without which a reader
// of pipeline_offsets would wait for them for ever.
func (s *Service) markCommitted(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	_, committed, err := events.GroupOffsets(cctx, s.cfg.Kafka.Brokers, s.cfg.Group, s.cfg.Kafka.Topic)
	if errors.Is(err, kafka.GroupIdNotFound) {
		return nil // a new group (some brokers say so instead of "no offsets"): nothing applied yet
	}
	if err != nil {
		return err
	}
	var marks []sink.Mark
	for p, o := range committed {
		if o > 0 {
			marks = append(marks, sink.Mark{Topic: s.cfg.Kafka.Topic, Partition: p, Next: o})
		}
	}
	slices.SortFunc(marks, func(a, b sink.Mark) int { return cmp.Compare(a.Partition, b.Partition) })
	_, err = s.sink.Apply(cctx, nil, marks)
	return err
}

// member is one consumer-group member: a reader, a dead-letter writer and a
// Consumer loop.
func (s *Service) member(ctx context.Context) error {
	reader := kafka.NewReader(kafka.ReaderConfig{
		Brokers:           s.cfg.Kafka.Brokers,
		GroupID:           s.cfg.Group,
		Topic:             s.cfg.Kafka.Topic,
		MinBytes:          1,
		MaxBytes:          16 << 20,
		MaxWait:           100 * time.Millisecond,
		QueueCapacity:     max(100, 2*s.cfg.BatchMax),
		CommitInterval:    0, // synchronous commits, after the MySQL transaction
		StartOffset:       kafka.FirstOffset,
		SessionTimeout:    s.cfg.SessionTimeout,
		RebalanceTimeout:  s.cfg.SessionTimeout,
		HeartbeatInterval: max(s.cfg.SessionTimeout/10, 100*time.Millisecond),
		// A partition reader whose fetch times out reconnects after
		// ReadBackoffMin·attempt², up to ReadBackoffMax, and kafka-go never
		// resets attempt: with its default maximum (1 s) every idle-poll
		// timeout after the third stopped the partition for a second,
		// which is HGP_COUNTER_REBUILD_WAIT.
		ReadBackoffMin: 10 * time.Millisecond,
		ReadBackoffMax: 100 * time.Millisecond,
		ErrorLogger:    events.ReaderErrorLogger(s.logger),
	})
	dlq := events.NewDLQWriter(s.cfg.Kafka.Brokers, s.cfg.Kafka.DLQTopic)
	err := New(s.logger, reader, s.sink, dlq, s.opts...).Run(ctx)
	return errors.Join(err, reader.Close(), dlq.Close())
}

// Close closes the MySQL pool (after Run returned).
func (s *Service) Close() error { return s.db.Close() }
