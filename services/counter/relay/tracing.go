package relay

import (
	"context"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/platform/telemetry"
)

// startProduce starts the span of one Kafka produce: a root span (a batch
// has no single parent) linked to the request of every entry through the
// traceparent stored with it in the outbox and carried in the message's
// header. end records err and ends it. With tracing off both are no-ops.
func startProduce(ctx context.Context, w MessageWriter, msgs []kafka.Message) (context.Context, func(error)) {
	if !telemetry.Enabled() {
		return ctx, func(error) {}
	}
	topic := "events"
	if kw, ok := w.(*kafka.Writer); ok && kw.Topic != "" {
		topic = kw.Topic
	}
	tps := make([]string, 0, len(msgs))
	for _, m := range msgs {
		for _, h := range m.Headers {
			if h.Key == events.HeaderTraceparent {
				tps = append(tps, string(h.Value))
			}
		}
	}
	ctx, span := telemetry.Tracer().Start(ctx, "relay produce",
		trace.WithNewRoot(),
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithLinks(telemetry.Links(tps)...),
		trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", topic),
			attribute.Int("messaging.batch.message_count", len(msgs)),
		))
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}
