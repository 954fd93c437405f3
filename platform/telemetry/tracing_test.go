package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

const likePath = "/highgopress.counter.v1.CounterService/Like"

// withRecorder installs a recording provider for one test.
func withRecorder(t testing.TB, sampler sdktrace.Sampler) *tracetest.SpanRecorder {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sampler))
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	enabled.Store(true)
	t.Cleanup(func() {
		enabled.Store(false)
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
		_ = tp.Shutdown(context.Background())
	})
	return rec
}

// TestServerSpanContinuesTheCallersTrace: the span is a child of the
// incoming traceparent, and the handler sees a traceparent naming the new
// span (what the gateway forwards and the counter stores in its outbox).
func TestServerSpanContinuesTheCallersTrace(t *testing.T) {
	rec := withRecorder(t, sdktrace.ParentBased(sdktrace.NeverSample()))
	const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	var seen string
	h := Middleware([]string{"highgopress.counter.v1.CounterService"})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r.Header.Get("traceparent")
		w.WriteHeader(http.StatusOK)
	}))
	req := httptest.NewRequest(http.MethodPost, likePath, strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", parent)
	h.ServeHTTP(httptest.NewRecorder(), req)

	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	s := spans[0]
	if s.Name() != "highgopress.counter.v1.CounterService/Like" || s.SpanKind() != trace.SpanKindServer {
		t.Errorf("span %q kind %v", s.Name(), s.SpanKind())
	}
	if s.Parent().SpanID().String() != "b7ad6b7169203331" || s.SpanContext().TraceID().String() != "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("span parent %v trace %v: not the caller's", s.Parent().SpanID(), s.SpanContext().TraceID())
	}
	want := "00-0af7651916cd43dd8448eb211c80319c-" + s.SpanContext().SpanID().String() + "-01"
	if seen != want {
		t.Errorf("handler saw traceparent %q, want %q", seen, want)
	}
}

// TestHealthIsNotTraced: probes are measured, never traced.
func TestHealthIsNotTraced(t *testing.T) {
	rec := withRecorder(t, sdktrace.AlwaysSample())
	h := Middleware(nil)(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	req := httptest.NewRequest(http.MethodPost, "/grpc.health.v1.Health/Check", nil)
	req.Header.Set("Content-Type", "application/grpc")
	h.ServeHTTP(httptest.NewRecorder(), req)
	if n := len(rec.Ended()); n != 0 {
		t.Fatalf("%d spans for a health check", n)
	}
}

// TestLinkAwareSampler: a root span linked to a sampled request is sampled
// even at ratio 0; one linked only to unsampled requests is not.
func TestLinkAwareSampler(t *testing.T) {
	c := Config{Sampler: "parentbased_traceidratio", Ratio: 0}
	rec := withRecorder(t, c.sampler())
	sampled := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	unsampled := "00-1af7651916cd43dd8448eb211c80319c-c7ad6b7169203331-00"
	_, s1 := Tracer().Start(context.Background(), "with sampled link", trace.WithLinks(Links([]string{unsampled, sampled, "junk"})...))
	s1.End()
	_, s2 := Tracer().Start(context.Background(), "unsampled links only", trace.WithLinks(Links([]string{unsampled})...))
	s2.End()
	ended := rec.Ended()
	if len(ended) != 1 || ended[0].Name() != "with sampled link" {
		t.Fatalf("recorded %d spans, want only the one with a sampled link", len(ended))
	}
	if l := ended[0].Links(); len(l) != 2 || !l[0].SpanContext.IsSampled() {
		t.Errorf("links %v: want 2, the sampled one first", l)
	}
}

// TestLogLinesCarryTraceIDs: a record logged with a span's context names it.
func TestLogLinesCarryTraceIDs(t *testing.T) {
	withRecorder(t, sdktrace.AlwaysSample())
	var buf bytes.Buffer
	logger := WithTraceIDs(slog.New(slog.NewJSONHandler(&buf, nil))).With("service", "x")
	ctx, span := Tracer().Start(context.Background(), "op")
	logger.InfoContext(ctx, "inside")
	span.End()
	logger.Info("outside")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var in, out map[string]any
	if len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &in) != nil || json.Unmarshal([]byte(lines[1]), &out) != nil {
		t.Fatalf("log: %q", buf.String())
	}
	if in["trace_id"] != span.SpanContext().TraceID().String() || in["span_id"] != span.SpanContext().SpanID().String() {
		t.Errorf("inside the span: %v", in)
	}
	if _, ok := out["trace_id"]; ok {
		t.Errorf("outside any span: %v", out)
	}
}

func TestConfigFrom(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, tc := range []struct {
		env     map[string]string
		enabled bool
		err     string
	}{
		{env: nil, enabled: false},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, enabled: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "console"}, enabled: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}, enabled: false},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "x", "OTEL_SDK_DISABLED": "true"}, enabled: false},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, err: "OTEL_TRACES_EXPORTER"},
		{env: map[string]string{"OTEL_TRACES_SAMPLER_ARG": "2"}, err: "OTEL_TRACES_SAMPLER_ARG"},
		{env: map[string]string{"OTEL_TRACES_SAMPLER": "sometimes"}, err: "OTEL_TRACES_SAMPLER"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "x", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, err: "OTEL_EXPORTER_OTLP_PROTOCOL"},
	} {
		c, err := ConfigFrom(env(tc.env))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: err %v, want one naming %s", tc.env, err, tc.err)
			}
			continue
		}
		if err != nil || c.Enabled != tc.enabled {
			t.Errorf("%v: enabled %v err %v, want %v", tc.env, c.Enabled, err, tc.enabled)
		}
	}
}
