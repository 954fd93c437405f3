package consumer_test

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/durabledb"
	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/platform/testenv/pipetest"
	"github.com/highgopress/highgopress/services/consumer"
)

const partitions = 4

// env is one test's pipeline resources (pipetest.Env), its connection and
// the consumer-group members per service.
type env struct {
	*pipetest.Env
	conn    *sql.DB
	workers int // consumer-group members per service (default 2)
}

func setup(t testing.TB) *env {
	t.Helper()
	return &env{Env: pipetest.NewEnv(t, strings.Split(testenv.KafkaBrokers(t), ","), testenv.MySQLDSN(t), partitions), workers: 2}
}

func (e *env) config(batch int) consumer.Config {
	return consumer.Config{
		Kafka: config.Kafka{Brokers: e.Brokers, Topic: e.Topic, DLQTopic: e.DLQ}, Group: e.Group, Partitions: partitions,
		SessionTimeout: 6 * time.Second, DSN: e.DSN, Migrate: true, BatchMax: batch, BatchWait: 20 * time.Millisecond, Workers: max(1, e.workers),
	}
}

type running struct {
	cancel context.CancelFunc
	done   chan error
	svc    *consumer.Service
}

// startConsumer runs a consumer service; stop cancels it and returns what
// Run returned.
func startConsumer(t testing.TB, e *env, batch int, opts ...consumer.Option) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := consumer.Open(ctx, logging.Discard(), e.config(batch), append([]consumer.Option{consumer.WithRegisterer(nil)}, opts...)...)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if e.conn == nil {
		e.conn = svc.DB()
	}
	r := &running{cancel: cancel, done: make(chan error, 1), svc: svc}
	go func() { r.done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		_ = r.stop(t) // a test that cares checks the error itself
		if e.conn == svc.DB() {
			e.conn = nil
		}
		_ = svc.Close()
	})
	return r
}

func (r *running) stop(t testing.TB) error {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("consumer did not stop")
		return nil
	}
}

// wait returns Run's error once it ended by itself.
func (r *running) wait(t testing.TB) error {
	t.Helper()
	select {
	case err := <-r.done:
		close(r.done)
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("consumer did not end")
		return nil
	}
}

func assertState(t testing.TB, e *env, want pipetest.State) {
	t.Helper()
	pipetest.AssertState(t, e.conn, want)
}

func likeEv(kind eventsv1.Kind, user string, v uint64) *eventsv1.Event {
	return &eventsv1.Event{EventId: "e" + strconv.FormatUint(v, 10), Kind: kind, UserId: user, Namespace: "article", ItemId: "1", Version: v}
}

// TestOutOfOrderNeverResurrects: the unlike (newer) arrives before the like
// it undid, in separate batches.
func TestOutOfOrderNeverResurrects(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	e.Produce(t, []*eventsv1.Event{
		likeEv(eventsv1.Kind_KIND_UNLIKE, "alice", 20),
		likeEv(eventsv1.Kind_KIND_LIKE, "alice", 10),
		likeEv(eventsv1.Kind_KIND_LIKE, "bob", 11),
		{EventId: "f2", Kind: eventsv1.Kind_KIND_UNFOLLOW, UserId: "alice", TargetUserId: "bob", Version: 30},
		{EventId: "f1", Kind: eventsv1.Kind_KIND_FOLLOW, UserId: "alice", TargetUserId: "bob", Version: 29},
	})
	startConsumer(t, e, 1) // one event per batch: the stale like gets its own transaction
	e.WaitDrained(t)
	q := durabledb.New(e.conn)
	counts, err := q.ListItemCounts(ctx, durabledb.ListItemCountsParams{Namespace: "article", ItemID: "1"})
	if err != nil {
		t.Fatal(err)
	}
	likers, err := q.ListLikers(ctx, durabledb.ListLikersParams{Namespace: "article", ItemID: "1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(counts) != 1 || counts[0].Value != 1 || len(likers) != 1 || likers[0] != "bob" {
		t.Fatalf("counts %+v likers %v; want likes=1 by bob only", counts, likers)
	}
	uc, err := q.GetUserCounts(ctx, "bob")
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		t.Fatal(err)
	}
	if uc.Followers != 0 {
		t.Fatalf("bob has %d followers after a newer unfollow", uc.Followers)
	}
}

// TestPoisonMessagesGoToDeadLetterTopic: undecodable and invalid messages
// land in the DLQ with a reason; the events around them are applied. A
// later batch of nothing but poison still moves pipeline_offsets to the end
// of the partition.
func TestPoisonMessagesGoToDeadLetterTopic(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	w := events.NewWriter(e.Brokers, e.Topic)
	defer w.Close()
	invalid, _ := proto.Marshal(&eventsv1.Event{EventId: "bad", Kind: eventsv1.Kind_KIND_LIKE, Namespace: "article", ItemId: "1", Version: 5})
	unknown, _ := proto.Marshal(&eventsv1.Event{EventId: "unk", Kind: eventsv1.Kind(99), UserId: "x", Version: 5})
	var msgs []kafka.Message
	for i := range 10 {
		m, _ := events.Message(likeEv(eventsv1.Kind_KIND_LIKE, "u"+strconv.Itoa(i), uint64(100+i)), "")
		msgs = append(msgs, m)
		if i == 3 {
			msgs = append(msgs,
				kafka.Message{Key: []byte("article/1"), Value: []byte("\xff\xff not protobuf")},
				kafka.Message{Key: []byte("article/1"), Value: invalid},
				kafka.Message{Key: []byte("article/1"), Value: unknown})
		}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	startConsumer(t, e, 100)
	e.WaitDrained(t)
	counts, err := durabledb.New(e.conn).ListItemCounts(ctx, durabledb.ListItemCountsParams{Namespace: "article", ItemID: "1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(counts) != 1 || counts[0].Value != 10 {
		t.Fatalf("counts %+v, want likes=10", counts)
	}

	// Poison only: the consumer is idle, so these make batches of their own.
	var only []kafka.Message
	for i := range 3 {
		only = append(only, kafka.Message{Key: []byte("article/1"), Value: []byte("\xff\xff poison only " + strconv.Itoa(i))})
	}
	if err := w.WriteMessages(ctx, only...); err != nil {
		t.Fatal(err)
	}
	e.WaitDrained(t) // includes pipeline_offsets = end offsets
	ends, err := events.EndOffsets(ctx, e.Brokers, e.Topic)
	if err != nil {
		t.Fatal(err)
	}
	marks, err := pipetest.PipelineOffsets(ctx, e.conn, e.Topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(marks) != 1 {
		t.Fatalf("pipeline_offsets %v, end offsets %v; want one partition", marks, ends)
	}
	for p, next := range marks {
		if next != int64(len(msgs)+len(only)) || ends[p] != next {
			t.Fatalf("pipeline_offsets %v, end offsets %v; want the one partition applied below %d", marks, ends, len(msgs)+len(only))
		}
	}

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: e.Brokers, Topic: e.DLQ, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	reasons := map[string]string{}
	for range 3 + len(only) {
		m, err := r.FetchMessage(rctx)
		if err != nil {
			t.Fatalf("dead-letter topic: %v", err)
		}
		var reason, source string
		for _, h := range m.Headers {
			switch h.Key {
			case consumer.HeaderDLQReason:
				reason = string(h.Value)
			case consumer.HeaderDLQSource:
				source = string(h.Value)
			}
		}
		if reason == "" || !strings.HasPrefix(source, e.Topic+"/") {
			t.Fatalf("dead letter without reason or source: %v", m.Headers)
		}
		reasons[string(m.Value)] = reason
	}
	if !strings.Contains(reasons["\xff\xff not protobuf"], "decode") || !strings.Contains(reasons[string(invalid)], "user_id is empty") ||
		!strings.Contains(reasons[string(unknown)], "unknown kind") {
		t.Fatalf("reasons: %q", reasons)
	}
	for _, m := range only {
		if !strings.Contains(reasons[string(m.Value)], "decode") {
			t.Fatalf("reasons: %q", reasons)
		}
	}
}

var errCrash = errors.New("simulated crash between the MySQL commit and the offset commit")

// TestCrashBetweenTransactionAndOffsetCommit: three consumer instances in a
// row die right after a MySQL commit, before committing offsets; the
// redelivered batches must not count anything twice.
func TestCrashBetweenTransactionAndOffsetCommit(t *testing.T) {
	e := setup(t)
	o := pipetest.NewOracle(11)
	e.Produce(t, pipetest.Events(o.Generate(6000, 50, 20), 1))
	for i := range 3 {
		var batches atomic.Int64
		r := startConsumer(t, e, 50, consumer.WithAfterApply(func(context.Context, []kafka.Message) error {
			if batches.Add(1) == int64(3+i) {
				return errCrash
			}
			return nil
		}))
		if err := r.wait(t); !errors.Is(err, errCrash) {
			t.Fatalf("run %d ended with %v", i, err)
		}
	}
	startConsumer(t, e, 50)
	e.WaitDrained(t)
	assertState(t, e, o.Want())
}

// TestCommittedOffsetsBecomeMarks: partitions that get no new message still
// show how far they are applied — a consumer records the group's committed
// offsets in pipeline_offsets when it starts (rows missing, as for a topic
// consumed before the marks existed, are restored).
func TestCommittedOffsetsBecomeMarks(t *testing.T) {
	e := setup(t)
	o := pipetest.NewOracle(13)
	e.Produce(t, pipetest.Events(o.Generate(500, 50, 20), 1))
	first := startConsumer(t, e, 100)
	e.WaitDrained(t)
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}
	conn, err := consumer.OpenDB(e.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	if _, err := conn.ExecContext(ctx, "DELETE FROM pipeline_offsets"); err != nil {
		t.Fatal(err)
	}
	if err := pipetest.Applied(ctx, conn, e.Brokers, e.Topic); err == nil {
		t.Fatal("pipeline_offsets still matches the topic after the rows were deleted")
	}
	startConsumer(t, e, 100)
	testenv.EventuallyNoError(t, 30*time.Second, "marks restored from the committed offsets", func() error {
		return pipetest.Applied(ctx, conn, e.Brokers, e.Topic)
	})
}
