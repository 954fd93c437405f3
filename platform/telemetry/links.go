package telemetry

import (
	"context"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// MaxLinks bounds the links one batch span carries (the OpenTelemetry
// SDK's default span limit is 128).
const MaxLinks = 128

// SpanContext parses a W3C traceparent ("00-<trace>-<span>-<flags>") into
// the remote span context it names; ok is false when it is not valid.
func SpanContext(traceparent string) (trace.SpanContext, bool) {
	if traceparent == "" {
		return trace.SpanContext{}, false
	}
	carrier := propagation.MapCarrier{"traceparent": traceparent}
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), carrier))
	return sc, sc.IsValid()
}

// Links turns the traceparents of a batch's messages into span links
// (invalid and repeated ones skipped, at most MaxLinks), sampled contexts
// first so a large batch never drops the one that matters.
func Links(traceparents []string) []trace.Link {
	var sampled, other []trace.Link
	seen := make(map[trace.SpanID]bool, len(traceparents))
	for _, tp := range traceparents {
		sc, ok := SpanContext(tp)
		if !ok || seen[sc.SpanID()] {
			continue
		}
		seen[sc.SpanID()] = true
		if sc.IsSampled() {
			sampled = append(sampled, trace.Link{SpanContext: sc})
		} else {
			other = append(other, trace.Link{SpanContext: sc})
		}
	}
	out := append(sampled, other...)
	if len(out) > MaxLinks {
		out = out[:MaxLinks]
	}
	return out
}

// Traceparent is the W3C traceparent of the span ctx carries, or "" when
// it carries none.
func Traceparent(ctx context.Context) string {
	carrier := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, carrier)
	if tp := carrier["traceparent"]; tp != "" {
		return tp
	}
	propagation.TraceContext{}.Inject(ctx, carrier)
	return carrier["traceparent"]
}

// Enabled reports whether Setup installed a tracer provider that records
// spans; callers use it to skip work that only feeds spans.
func Enabled() bool { return enabled.Load() }

var enabled atomic.Bool
