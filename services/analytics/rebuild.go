package analytics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/segmentio/kafka-go"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/platform/bootstrap"
	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/services/analytics/redisstore"
)

// Rebuild is `analytics rebuild`: it deletes every analytics key and
// replays the topic from its earliest offset up to its end at the start
// (see RebuildFromKafka). HGP_KAFKA_BROKERS is required.
func Rebuild(ctx context.Context, logger *slog.Logger, r *config.Reader) error {
	cfg := ConfigFrom(r)
	if !cfg.Kafka.Enabled() {
		r.Check("HGP_KAFKA_BROKERS", errors.New("is required to rebuild from Kafka"))
	}
	if err := r.Err(); err != nil {
		return err
	}
	closers := &bootstrap.Closers{}
	defer func() { _ = closers.Close() }()
	rdb, err := open(ctx, cfg, closers)
	if err != nil {
		return err
	}
	store := redisstore.New(logger, rdb, redisstore.WithPrefix(cfg.KeyPrefix))
	if err := store.LoadScripts(ctx); err != nil {
		return err
	}
	st, err := RebuildFromKafka(ctx, logger, store, cfg.Kafka.Brokers, cfg.Kafka.Topic)
	if err != nil {
		return err
	}
	logger.Info("analytics rebuilt from Kafka", "events", st.Events, "undecodable", st.Undecodable,
		"transitions", st.Result.Transitions, "api_calls", st.Result.APICalls, "deleted_keys", st.Deleted)
	return nil
}

// RebuildStats says what a rebuild did.
type RebuildStats struct {
	Deleted     int
	Events      int
	Undecodable int
	Result      redisstore.Result
}

// RebuildFromKafka resets the store and applies every event of topic from
// the earliest offset the broker keeps up to the end each partition had
// when it started, through the same Apply as the live consumer group.
// Undecodable messages are skipped (the group dead-lettered them). Running
// replicas may keep applying meanwhile: pair versions make every event
// count once whichever path applies it first.
func RebuildFromKafka(ctx context.Context, logger *slog.Logger, store *redisstore.Store, brokers []string, topic string) (RebuildStats, error) {
	var st RebuildStats
	ends, err := events.EndOffsets(ctx, brokers, topic)
	if err != nil {
		return st, fmt.Errorf("rebuild: %w", err)
	}
	if st.Deleted, err = store.Reset(ctx); err != nil {
		return st, fmt.Errorf("rebuild: %w", err)
	}
	parts := make([]int, 0, len(ends))
	for p := range ends {
		parts = append(parts, p)
	}
	sort.Ints(parts)
	for _, p := range parts {
		if ends[p] <= 0 {
			continue
		}
		if err := replayPartition(ctx, logger, store, brokers, topic, p, ends[p], &st); err != nil {
			return st, err
		}
	}
	return st, nil
}

func replayPartition(ctx context.Context, logger *slog.Logger, store *redisstore.Store, brokers []string, topic string, p int, end int64, st *RebuildStats) error {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: brokers, Topic: topic, Partition: p, MinBytes: 1, MaxBytes: 16 << 20,
		MaxWait: 200 * time.Millisecond, ErrorLogger: events.ReaderErrorLogger(logger),
	})
	defer r.Close()
	if err := r.SetOffset(kafka.FirstOffset); err != nil {
		return fmt.Errorf("rebuild: partition %d: %w", p, err)
	}
	batch := make([]*eventsv1.Event, 0, 2000)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		res, err := store.Apply(ctx, batch)
		if err != nil {
			return fmt.Errorf("rebuild: partition %d: %w", p, err)
		}
		st.Result.Transitions += res.Transitions
		st.Result.Ignored += res.Ignored
		st.Result.APICalls += res.APICalls
		st.Result.Duplicates += res.Duplicates
		st.Result.Skipped += res.Skipped
		batch = batch[:0]
		return nil
	}
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			return fmt.Errorf("rebuild: partition %d: %w", p, err)
		}
		st.Events++
		if ev, err := events.Decode(m.Value); err == nil {
			batch = append(batch, ev)
		} else {
			st.Undecodable++
		}
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return err
			}
		}
		if m.Offset >= end-1 {
			return flush()
		}
	}
}
