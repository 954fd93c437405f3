// Package kafkasink publishes the gateway's API call statistics to Kafka as
// API_CALL events on the user-actions topic, encoded and keyed by the
// events contract (platform/events), for the consumer and analytics.
package kafkasink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/services/gateway/apistats"
)

// Writer is the part of *kafka.Writer the sink uses: WriteMessages returns
// once the broker acknowledged every message (or failed).
type Writer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Sink is an apistats.Sink writing one Kafka message per stat.
type Sink struct {
	logger  *slog.Logger
	w       Writer
	refused atomic.Int64
}

// New returns a Sink writing with w (events.NewWriter).
func New(logger *slog.Logger, w Writer) *Sink { return &Sink{logger: logger, w: w} }

// Refused returns how many stats the events contract refused (and were
// dropped) so far.
func (s *Sink) Refused() int64 { return s.refused.Load() }

// Publish implements apistats.Sink. A failed write is returned (the
// recorder keeps the batch, with the same event ids, for the next flush). A
// stat the events contract refuses can never be sent: it is left out (and
// counted in Refused) rather than holding the rest of the batch back.
func (s *Sink) Publish(ctx context.Context, stats []apistats.Stat) error {
	if len(stats) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, 0, len(stats))
	var refused []error
	for _, st := range stats {
		m, err := Message(st)
		if err != nil {
			refused = append(refused, err)
			continue
		}
		msgs = append(msgs, m)
	}
	if len(refused) > 0 {
		s.refused.Add(int64(len(refused)))
		s.logger.Error("api stats refused by the events contract, dropped", "count", len(refused), "err", errors.Join(refused...))
	}
	if len(msgs) == 0 {
		return nil
	}
	if err := s.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("kafkasink: write %d events: %w", len(msgs), err)
	}
	return nil
}

// Event maps a stat to its API_CALL event: the stat's id, procedure, code,
// the call count as delta, the latency histogram, and the end of the
// window as time.
func Event(st apistats.Stat) *eventsv1.Event {
	return &eventsv1.Event{
		EventId:          st.ID,
		Time:             timestamppb.New(st.End),
		Kind:             eventsv1.Kind_KIND_API_CALL,
		Procedure:        st.Procedure,
		Code:             st.Code,
		Delta:            st.Count,
		LatencyUsBuckets: st.LatencyBuckets,
	}
}

// Message encodes a stat as a Kafka message under the events contract (key
// "api/<procedure>", event-type header, validated as the consumer will).
func Message(st apistats.Stat) (kafka.Message, error) {
	if st.ID == "" {
		return kafka.Message{}, errors.New("kafkasink: stat without id")
	}
	m, err := events.Message(Event(st), "")
	if err != nil {
		return kafka.Message{}, fmt.Errorf("kafkasink: %w", err)
	}
	return m, nil
}
