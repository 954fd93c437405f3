// Package pipetest gives tests of the event pipeline (the consumer's, and
// the whole pipeline's in tests/pipeline) isolated resources on the real
// servers — a fresh MySQL database and fresh Kafka topics per test,
// private middleware servers to restart or kill — plus an oracle of
// random histories, a load generator for the counter service, and
// polling helpers.
package pipetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/segmentio/kafka-go"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/platform/durabledb"
	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/platform/testenv"
)

// Suffix returns a random lowercase hex suffix.
func Suffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Database creates a fresh database on the server of baseDSN, drops it when
// the test ends and returns a DSN for it.
func Database(t testing.TB, baseDSN string) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(baseDSN)
	if err != nil {
		t.Fatalf("parse dsn: %v", err)
	}
	name := "hgp_t_" + Suffix()
	admin := cfg.Clone()
	admin.DBName = ""
	conn, err := sql.Open("mysql", admin.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		c, err := sql.Open("mysql", admin.FormatDSN())
		if err == nil {
			_, _ = c.Exec("DROP DATABASE IF EXISTS " + name)
			_ = c.Close()
		}
	})
	out := cfg.Clone()
	out.DBName = name
	return out.FormatDSN()
}

// Topic creates a fresh topic with the given partitions and deletes it when
// the test ends.
func Topic(t testing.TB, brokers []string, partitions int) string {
	t.Helper()
	name := "hgp-t-" + Suffix()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := events.EnsureTopic(ctx, brokers, name, partitions); err != nil {
		t.Fatalf("create topic: %v", err)
	}
	WaitTopic(t, brokers, name, partitions)
	t.Cleanup(func() {
		client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
		_, _ = client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{name}})
	})
	return name
}

// WaitTopic waits until every partition of topic has a leader.
func WaitTopic(t testing.TB, brokers []string, topic string, partitions int) {
	t.Helper()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second}
	Eventually(t, 30*time.Second, func() error {
		meta, err := client.Metadata(context.Background(), &kafka.MetadataRequest{Topics: []string{topic}})
		if err != nil {
			return err
		}
		for _, tp := range meta.Topics {
			if tp.Name != topic {
				continue
			}
			if tp.Error != nil {
				return tp.Error
			}
			if len(tp.Partitions) != partitions {
				return fmt.Errorf("topic %s has %d of %d partitions", topic, len(tp.Partitions), partitions)
			}
			for _, p := range tp.Partitions {
				if p.Leader.ID < 0 || p.Error != nil {
					return fmt.Errorf("partition %d has no leader", p.ID)
				}
			}
			return nil
		}
		return fmt.Errorf("topic %s not found", topic)
	})
}

// Eventually polls f until it returns nil or the deadline passes.
func Eventually(t testing.TB, within time.Duration, f func() error) {
	t.Helper()
	testenv.EventuallyNoError(t, within, "the condition", f)
}

// Drained reports nil when the group's committed offsets reached the end of
// every partition of topic.
func Drained(ctx context.Context, brokers []string, group, topic string) error {
	lag, err := events.GroupLag(ctx, brokers, group, topic)
	if err != nil {
		return err
	}
	if lag > 0 {
		return fmt.Errorf("group %s is %d messages behind on %s", group, lag, topic)
	}
	return nil
}

// ErrMarkPastEnd is Applied's error for a pipeline_offsets row beyond the
// partition's end: never true, waiting does not help.
var ErrMarkPastEnd = errors.New("pipeline_offsets ahead of Kafka")

// Applied reports nil when MySQL's pipeline_offsets (conn) records, for
// every partition of topic that has messages, exactly the partition's end
// offset, and nothing for the other partitions: MySQL says it applied
// everything in Kafka. Once the group drained (Drained) this must hold, as
// the consumer writes a batch's marks before committing its offsets.
func Applied(ctx context.Context, conn *sql.DB, brokers []string, topic string) error {
	ends, err := events.EndOffsets(ctx, brokers, topic)
	if err != nil {
		return err
	}
	if len(ends) == 0 {
		return fmt.Errorf("topic %s: no partitions", topic)
	}
	got, err := PipelineOffsets(ctx, conn, topic)
	if err != nil {
		return err
	}
	for p, n := range got {
		if end, ok := ends[p]; !ok || n > end {
			return fmt.Errorf("%w: %s/%d is applied below %d, past its end offset %d", ErrMarkPastEnd, topic, p, n, end)
		}
	}
	for p, end := range ends {
		if n, ok := got[p]; end > 0 && (!ok || n != end) {
			return fmt.Errorf("pipeline_offsets of %s/%d = %d (recorded: %v), want the end offset %d", topic, p, n, ok, end)
		}
	}
	return nil
}

// PipelineOffsets returns MySQL's pipeline_offsets of topic: per
// partition, the offset below which every message is applied.
func PipelineOffsets(ctx context.Context, conn *sql.DB, topic string) (map[int]int64, error) {
	rows, err := durabledb.New(conn).PipelineOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("pipeline_offsets of %s: %w", topic, err)
	}
	out := make(map[int]int64, len(rows))
	for _, r := range rows {
		out[int(r.PartitionID)] = r.NextOffset
	}
	return out, nil
}

// Produce writes events to topic as the relay would (events.Message, no
// traceparent), in requests of up to 5,000 messages.
func Produce(t testing.TB, brokers []string, topic string, evs []*eventsv1.Event) {
	t.Helper()
	w := events.NewWriter(brokers, topic)
	defer w.Close()
	msgs := make([]kafka.Message, len(evs))
	for i, ev := range evs {
		m, err := events.Message(ev, "")
		if err != nil {
			t.Fatal(err)
		}
		msgs[i] = m
	}
	for len(msgs) > 0 {
		n := min(len(msgs), 5000)
		if err := w.WriteMessages(context.Background(), msgs[:n]...); err != nil {
			t.Fatal(err)
		}
		msgs = msgs[n:]
	}
}

// WaitDrained waits until group has no lag on topic and the pipeline_offsets
// of the MySQL database at dsn reached the end of every partition (Drained,
// then Applied); a mark past the end fails the test at once.
func WaitDrained(t testing.TB, dsn string, brokers []string, group, topic string) {
	t.Helper()
	conn, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	Eventually(t, 120*time.Second, func() error {
		if err := Drained(ctx, brokers, group, topic); err != nil {
			return err
		}
		err := Applied(ctx, conn, brokers, topic)
		if errors.Is(err, ErrMarkPastEnd) {
			t.Fatal(err)
		}
		return err
	})
}

// AssertState fails the test unless MySQL (conn) holds want.
func AssertState(t testing.TB, conn *sql.DB, want State) {
	t.Helper()
	got, err := Snapshot(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(got, want); d != "" {
		t.Fatalf("MySQL differs from the oracle: %s", d)
	}
}

// Env is one test's pipeline resources on the real servers: an event topic
// of its own, a dead-letter topic, a consumer group and a fresh MySQL
// database (all removed when the test ends).
type Env struct {
	Brokers []string
	Topic   string
	DLQ     string
	Group   string
	DSN     string
}

// NewEnv creates a test's Env on the given brokers and the MySQL server of
// baseDSN, with partitions partitions on the event topic.
func NewEnv(t testing.TB, brokers []string, baseDSN string, partitions int) *Env {
	t.Helper()
	return &Env{
		Brokers: brokers,
		Topic:   Topic(t, brokers, partitions),
		DLQ:     Topic(t, brokers, 1),
		Group:   "hgp-t-" + Suffix(),
		DSN:     Database(t, baseDSN),
	}
}

// Produce writes events to the Env's topic as the relay would.
func (e *Env) Produce(t testing.TB, evs []*eventsv1.Event) {
	t.Helper()
	Produce(t, e.Brokers, e.Topic, evs)
}

// WaitDrained waits until the Env's group has no lag and MySQL's
// pipeline_offsets reached the end of every partition of its topic.
func (e *Env) WaitDrained(t testing.TB) {
	t.Helper()
	WaitDrained(t, e.DSN, e.Brokers, e.Group, e.Topic)
}
