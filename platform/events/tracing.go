package events

import (
	"context"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/highgopress/highgopress/platform/telemetry"
)

// StartBatchSpan starts the span of handling one batch of messages (a
// relay's produce, a consumer's apply): a root span, since a batch has no
// single parent, linked to the request behind every message through its
// traceparent header, so the trace of a like leads to every batch that
// carried it. operation is the messaging operation ("send", "process").
// end records err and ends the span. With tracing off both are no-ops.
func StartBatchSpan(ctx context.Context, name, operation string, kind trace.SpanKind, topic string, msgs []kafka.Message) (context.Context, func(error)) {
	if !telemetry.Enabled() {
		return ctx, func(error) {}
	}
	tps := make([]string, 0, len(msgs))
	for _, m := range msgs {
		if topic == "" {
			topic = m.Topic
		}
		for _, h := range m.Headers {
			if h.Key == HeaderTraceparent {
				tps = append(tps, string(h.Value))
			}
		}
	}
	ctx, span := telemetry.Tracer().Start(ctx, name,
		trace.WithNewRoot(),
		trace.WithSpanKind(kind),
		trace.WithLinks(telemetry.Links(tps)...),
		trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.operation.type", operation),
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
