package consumer

import (
	"context"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/platform/telemetry"
)

// startApply starts the span of applying one batch to MySQL: a root span
// (a batch has no single parent) linked to the request behind every
// message through its traceparent header, so the trace of a like leads to
// the batch that made it durable. end records err and ends it. With
// tracing off both are no-ops.
func startApply(ctx context.Context, batch []kafka.Message) (context.Context, func(error)) {
	if !telemetry.Enabled() {
		return ctx, func(error) {}
	}
	tps := make([]string, 0, len(batch))
	topic := ""
	for _, m := range batch {
		topic = m.Topic
		for _, h := range m.Headers {
			if h.Key == events.HeaderTraceparent {
				tps = append(tps, string(h.Value))
			}
		}
	}
	ctx, span := telemetry.Tracer().Start(ctx, "consumer apply",
		trace.WithNewRoot(),
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(telemetry.Links(tps)...),
		trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", topic),
			attribute.Int("messaging.batch.message_count", len(batch)),
		))
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}
