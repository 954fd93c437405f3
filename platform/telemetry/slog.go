package telemetry

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// WithTraceIDs returns logger with every record logged with a context that
// carries a span (logger.InfoContext(ctx, ...)) annotated with trace_id and
// span_id, so log lines join the trace of the request they belong to.
// Records without a span context are left as they are.
func WithTraceIDs(logger *slog.Logger) *slog.Logger {
	if _, ok := logger.Handler().(traceHandler); ok {
		return logger
	}
	return slog.New(traceHandler{logger.Handler()})
}

// traceHandler adds trace_id and span_id to records whose context carries
// a valid span context.
type traceHandler struct{ next slog.Handler }

func (h traceHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			r = r.Clone()
			r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
		}
	}
	return h.next.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceHandler{h.next.WithAttrs(as)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.next.WithGroup(name)}
}
