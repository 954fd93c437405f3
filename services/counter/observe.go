package counter

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	platformmetrics "github.com/highgopress/highgopress/platform/metrics"
	"github.com/highgopress/highgopress/platform/telemetry"
	"github.com/highgopress/highgopress/platform/tracecontext"
)

// writes counts the writes of the use cases by operation (like, unlike,
// follow, unfollow, increment) and result: changed, unchanged (the state
// already was what was asked: a repeated like, a replayed increment is
// not told apart and counts as changed) or error.
var writes = platformmetrics.Register(prometheus.DefaultRegisterer, prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "hgp_counter_writes_total",
	Help: "Counter writes by operation (like, unlike, follow, unfollow, increment) and result (changed, unchanged, error).",
}, []string{"op", "result"}))

// observeWrite starts one store write: with tracing on, a client span
// around the Redis script whose traceparent is the one the outbox entry
// stores (so the relay's and the consumer's links point at it). done
// counts the write and ends the span.
func observeWrite(ctx context.Context, op string) (context.Context, func(changed bool, err error)) {
	var span trace.Span
	if telemetry.Enabled() {
		ctx, span = telemetry.Tracer().Start(ctx, "redis "+op,
			trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("db.system.name", "redis"), attribute.String("db.operation.name", "EVALSHA")))
		if tp := telemetry.Traceparent(ctx); tp != "" {
			ctx = tracecontext.With(ctx, tp)
		}
	}
	return ctx, func(changed bool, err error) {
		result := "unchanged"
		switch {
		case err != nil:
			result = "error"
		case changed:
			result = "changed"
		}
		writes.WithLabelValues(op, result).Inc()
		if span != nil {
			span.SetAttributes(attribute.Bool("hgp.changed", changed))
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
		}
	}
}

func pick(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}
