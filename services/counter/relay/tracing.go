package relay

import (
	"context"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/highgopress/highgopress/platform/events"
)

// startProduce starts the span of one Kafka produce, linked to the request
// of every entry through the traceparent stored with it in the outbox and
// carried in the message's header (events.StartBatchSpan).
func startProduce(ctx context.Context, w MessageWriter, msgs []kafka.Message) (context.Context, func(error)) {
	topic := "events"
	if kw, ok := w.(*kafka.Writer); ok && kw.Topic != "" {
		topic = kw.Topic
	}
	return events.StartBatchSpan(ctx, "relay produce", "send", trace.SpanKindProducer, topic, msgs)
}
