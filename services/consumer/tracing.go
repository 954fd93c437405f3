package consumer

import (
	"context"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/highgopress/highgopress/platform/events"
)

// startApply starts the span of applying one batch to MySQL, linked to the
// request behind every message (events.StartBatchSpan), so the trace of a
// like leads to the batch that made it durable.
func startApply(ctx context.Context, batch []kafka.Message) (context.Context, func(error)) {
	return events.StartBatchSpan(ctx, "consumer apply", "process", trace.SpanKindConsumer, "", batch)
}
