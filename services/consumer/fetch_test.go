package consumer_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/consumer"
	"github.com/highgopress/highgopress/services/consumer/sink"
)

// flakyReader fails its first fetches (a broker restarting), then hands out
// msgs, then waits for the end of the context.
type flakyReader struct {
	mu        sync.Mutex
	failures  int
	msgs      []kafka.Message
	committed []kafka.Message
}

func (r *flakyReader) FetchMessage(ctx context.Context) (kafka.Message, error) {
	r.mu.Lock()
	if r.failures > 0 {
		r.failures--
		r.mu.Unlock()
		return kafka.Message{}, errors.New("failed to dial: connection refused")
	}
	if len(r.msgs) > 0 {
		m := r.msgs[0]
		r.msgs = r.msgs[1:]
		r.mu.Unlock()
		return m, nil
	}
	r.mu.Unlock()
	<-ctx.Done()
	return kafka.Message{}, ctx.Err()
}

func (r *flakyReader) CommitMessages(_ context.Context, msgs ...kafka.Message) error {
	r.mu.Lock()
	r.committed = append(r.committed, msgs...)
	r.mu.Unlock()
	return nil
}

func (r *flakyReader) commits() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.committed)
}

type countingApplier struct {
	mu     sync.Mutex
	events int
	marks  []sink.Mark
}

func (a *countingApplier) Apply(_ context.Context, evs []*eventsv1.Event, marks []sink.Mark) (sink.Result, error) {
	a.mu.Lock()
	a.events += len(evs)
	a.marks = append(a.marks, marks...)
	a.mu.Unlock()
	return sink.Result{}, nil
}

// TestRunSurvivesFetchErrors: a broker restart makes FetchMessage fail for a
// while; the consumer must keep going (the reader reconnects by itself)
// rather than stop the service.
func TestRunSurvivesFetchErrors(t *testing.T) {
	const n = 20
	r := &flakyReader{failures: 3}
	for i := 0; i < n; i++ {
		v, err := proto.Marshal(&eventsv1.Event{
			EventId: "1-" + strconv.Itoa(i), Kind: eventsv1.Kind_KIND_LIKE, UserId: "u" + strconv.Itoa(i),
			Namespace: "article", ItemId: "a", Version: uint64(i + 1),
		})
		if err != nil {
			t.Fatal(err)
		}
		r.msgs = append(r.msgs, kafka.Message{Partition: 0, Offset: int64(i), Value: v})
	}
	app := &countingApplier{}
	c := consumer.New(logging.Discard(), r, app, nil,
		consumer.WithBackoff(time.Millisecond, 5*time.Millisecond), consumer.WithRegisterer(nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	testenv.Eventually(t, 10*time.Second, "every message committed", func() bool {
		select {
		case err := <-done:
			t.Fatalf("Run stopped after a fetch error: %v", err)
		default:
		}
		return r.commits() >= n
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	if app.events != n {
		t.Fatalf("applied %d events, want %d", app.events, n)
	}
	if last := app.marks[len(app.marks)-1]; last != (sink.Mark{Partition: 0, Next: n}) {
		t.Fatalf("last offset mark %+v, want partition 0 applied below %d", last, n)
	}
}

// TestRunSkipsQueuedFetchErrors: kafka-go's reader queues one error per
// failed attempt of a partition whose leader died (every 10–100 ms until
// the partition moves), among the other partitions' messages. The consumer
// backs off once, not once per queued error: with a backoff of at least a
// second, 400 queued errors must not hold the messages behind them for
// minutes.
func TestRunSkipsQueuedFetchErrors(t *testing.T) {
	const n = 20
	r := &flakyReader{failures: 400}
	for i := 0; i < n; i++ {
		v, err := proto.Marshal(&eventsv1.Event{
			EventId: "1-" + strconv.Itoa(i), Kind: eventsv1.Kind_KIND_LIKE, UserId: "u" + strconv.Itoa(i),
			Namespace: "article", ItemId: "a", Version: uint64(i + 1),
		})
		if err != nil {
			t.Fatal(err)
		}
		r.msgs = append(r.msgs, kafka.Message{Partition: 0, Offset: int64(i), Value: v})
	}
	app := &countingApplier{}
	c := consumer.New(logging.Discard(), r, app, nil,
		consumer.WithBackoff(time.Second, 5*time.Second), consumer.WithRegisterer(nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	took := testenv.Eventually(t, 20*time.Second, "every message committed", func() bool {
		select {
		case err := <-done:
			t.Fatalf("Run stopped after a fetch error: %v", err)
		default:
		}
		return r.commits() >= n
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	if app.events != n {
		t.Fatalf("applied %d events, want %d", app.events, n)
	}
	t.Logf("400 queued errors skipped, %d messages committed after %s", n, took.Round(time.Millisecond))
}
