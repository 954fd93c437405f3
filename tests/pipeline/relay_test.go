package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/platform/testenv/pipetest"
	"github.com/highgopress/highgopress/services/counter/outbox"
	"github.com/highgopress/highgopress/services/counter/relay"
)

// TestEndToEndThroughRelay: 20,000 requests from 200 users become outbox
// entries; two relays (one of them taking over a crashed instance's pending
// entries, some already written to Kafka once) move them to Kafka; the
// consumer applies them. MySQL must equal the oracle, and stay equal when
// every Kafka message is delivered a second time.
func TestEndToEndThroughRelay(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t), DB: pipelineRedisDB})
	defer rdb.Close()
	stream := "hgp:t:" + pipetest.Suffix() + ":outbox"
	t.Cleanup(func() { _ = rdb.Del(context.Background(), stream, stream+":dead").Err() })

	o := pipetest.NewOracle(7)
	ops := o.Generate(20000, 200, 50)
	pipe := rdb.Pipeline()
	for _, op := range ops {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: outboxFields(op)})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	// A relay instance crashed after reading 1,000 entries and writing the
	// first 500 of them to Kafka, before acknowledging any.
	if err := rdb.XGroupCreateMkStream(ctx, stream, outbox.Group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: outbox.Group, Consumer: "crashed", Streams: []string{stream, ">"}, Count: 1000, Block: -1}).Result()
	if err != nil {
		t.Fatal(err)
	}
	var early []*eventsv1.Event
	for _, m := range res[0].Messages[:500] {
		ev, err := relay.Convert(m.ID, m.Values)
		if err != nil {
			t.Fatal(err)
		}
		early = append(early, ev)
	}
	e.Produce(t, early)

	startConsumer(t, e, 500)
	for i := range 2 {
		w := events.NewWriter(e.Brokers, e.Topic)
		defer w.Close()
		r := relay.New(logging.Discard(), rdb, w, relay.WithStream(stream), relay.WithConsumerName("relay-"+strconv.Itoa(i)),
			relay.WithClaimIdle(time.Second, 200*time.Millisecond), relay.WithBlock(100*time.Millisecond), relay.WithRegisterer(nil))
		rctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); _ = r.Run(rctx) }()
		defer wg.Wait()
		defer cancel()
	}
	want := o.Want()
	pipetest.Eventually(t, 120*time.Second, func() error {
		if n := rdb.XLen(ctx, stream).Val(); n != 0 {
			return fmt.Errorf("outbox still holds %d entries", n)
		}
		got, err := pipetest.Snapshot(ctx, e.conn)
		if err != nil {
			return err
		}
		if d := pipetest.Diff(got, want); d != "" {
			return errors.New(d)
		}
		return nil
	})
	e.WaitDrained(t)
	pipetest.AssertState(t, e.conn, want)
	t.Logf("%d requests → %d outbox entries (+%d duplicates); %d likes, %d follows",
		20000, len(ops), len(early), len(want.Likes), len(want.Follows))

	// Redelivery: every message of the topic once more.
	replayTopic(t, e)
	e.WaitDrained(t)
	pipetest.AssertState(t, e.conn, want)
}

// replayTopic reads the whole topic and appends every message again.
func replayTopic(t testing.TB, e *env) {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: e.Brokers, Topic: e.Topic, GroupID: "replay-" + pipetest.Suffix(), StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	ends := map[int]int64{}
	client := &kafka.Client{Addr: kafka.TCP(e.Brokers...), Timeout: 5 * time.Second}
	var reqs []kafka.OffsetRequest
	for p := range partitions {
		reqs = append(reqs, kafka.LastOffsetOf(p))
	}
	lo, err := client.ListOffsets(context.Background(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{e.Topic: reqs}})
	if err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	for _, p := range lo.Topics[e.Topic] {
		ends[p.Partition] = p.LastOffset
		total += p.LastOffset
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var msgs []kafka.Message
	for int64(len(msgs)) < total {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("replay read %d of %d: %v", len(msgs), total, err)
		}
		if m.Offset < ends[m.Partition] {
			msgs = append(msgs, kafka.Message{Key: m.Key, Value: m.Value, Headers: m.Headers})
		}
	}
	w := events.NewWriter(e.Brokers, e.Topic)
	defer w.Close()
	for len(msgs) > 0 {
		n := min(len(msgs), 5000)
		if err := w.WriteMessages(context.Background(), msgs[:n]...); err != nil {
			t.Fatal(err)
		}
		msgs = msgs[n:]
	}
}
