package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/consumer"
	"github.com/highgopress/highgopress/services/consumer/sink"
)

// journal records, in order, what the consumer did with MySQL, the
// dead-letter topic and the offsets.
type journal struct {
	mu      sync.Mutex
	entries []string
}

func (j *journal) add(format string, args ...any) {
	j.mu.Lock()
	j.entries = append(j.entries, fmt.Sprintf(format, args...))
	j.mu.Unlock()
}

func (j *journal) list() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.entries)
}

// journalApplier fails every call holding the event id fail with a
// permanent error (a value too long), and its first transientMarks
// marks-only calls with a transient one.
type journalApplier struct {
	j              *journal
	fail           string
	transientMarks int
}

func (a *journalApplier) Apply(_ context.Context, evs []*eventsv1.Event, marks []sink.Mark) (sink.Result, error) {
	for _, ev := range evs {
		if ev.GetEventId() == a.fail {
			a.j.add("apply %d %v: permanent error", len(evs), marks)
			return sink.Result{}, &mysql.MySQLError{Number: 1406, Message: "Data too long"}
		}
	}
	if len(evs) == 0 && a.transientMarks > 0 {
		a.transientMarks--
		a.j.add("apply %d %v: transient error", len(evs), marks)
		return sink.Result{}, errors.New("connection refused")
	}
	a.j.add("apply %d %v", len(evs), marks)
	return sink.Result{}, nil
}

type journalWriter struct{ j *journal }

func (w journalWriter) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	w.j.add("dead-letter %d", len(msgs))
	return nil
}

type journalReader struct {
	flakyReader
	j *journal
}

func (r *journalReader) CommitMessages(ctx context.Context, msgs ...kafka.Message) error {
	r.j.add("commit %d", len(msgs))
	return r.flakyReader.CommitMessages(ctx, msgs...)
}

// TestOffsetMarksFollowTheBatch: the offset marks of a batch (per topic
// partition, its last offset + 1, poison included) go with its events in
// the one transaction; when the batch is applied event by event or holds
// only poison they are written alone, after every event and dead letter
// and before the offsets are committed; transient failures are retried.
func TestOffsetMarksFollowTheBatch(t *testing.T) {
	valid := func(id string) []byte {
		v, err := proto.Marshal(&eventsv1.Event{EventId: id, Kind: eventsv1.Kind_KIND_LIKE, UserId: "u" + id, Namespace: "article", ItemId: "a", Version: 1})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	garbage := []byte("\xff\xff not protobuf")
	msg := func(p int, off int64, v []byte) kafka.Message {
		return kafka.Message{Topic: "t", Partition: p, Offset: off, Value: v}
	}
	cases := []struct {
		name      string
		msgs      []kafka.Message
		fail      string
		transient int
		want      []string
	}{
		{
			name: "one transaction",
			msgs: []kafka.Message{msg(2, 40, valid("a")), msg(0, 7, valid("b")), msg(2, 41, garbage), msg(0, 8, valid("c"))},
			want: []string{"apply 3 [{t 0 9} {t 2 42}]", "dead-letter 1", "commit 4"},
		},
		{
			name: "event by event",
			msgs: []kafka.Message{
				msg(0, 0, valid("a")), msg(1, 0, garbage), msg(0, 1, valid("b")), msg(1, 1, valid("c")),
				msg(0, 2, valid("d")), msg(1, 2, valid("boom")), msg(0, 3, valid("e")),
			},
			fail:      "boom",
			transient: 2,
			want: []string{
				"apply 6 [{t 0 4} {t 1 3}]: permanent error",
				"apply 1 []", "apply 1 []", "apply 1 []", "apply 1 []", "apply 1 []: permanent error", "apply 1 []",
				"dead-letter 2",
				"apply 0 [{t 0 4} {t 1 3}]: transient error", "apply 0 [{t 0 4} {t 1 3}]: transient error",
				"apply 0 [{t 0 4} {t 1 3}]",
				"commit 7",
			},
		},
		{
			name: "only poison",
			msgs: []kafka.Message{msg(2, 3, garbage), msg(0, 7, garbage), msg(2, 4, garbage)},
			want: []string{"dead-letter 3", "apply 0 [{t 0 8} {t 2 5}]", "commit 3"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j := &journal{}
			r := &journalReader{flakyReader: flakyReader{msgs: slices.Clone(tc.msgs)}, j: j}
			c := consumer.New(logging.Discard(), r, &journalApplier{j: j, fail: tc.fail, transientMarks: tc.transient}, journalWriter{j},
				consumer.WithBatch(100, 200*time.Millisecond), consumer.WithBackoff(time.Millisecond, 5*time.Millisecond), consumer.WithRegisterer(nil))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()
			testenv.Eventually(t, 10*time.Second, "the batch committed", func() bool { return r.commits() >= len(tc.msgs) })
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got := j.list(); !slices.Equal(got, tc.want) {
				t.Fatalf("the consumer did\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}
