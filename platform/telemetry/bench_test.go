package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// BenchmarkMiddleware measures the CPU one request spends in the RPC
// middleware (each like passes it twice: gateway and counter): none (the
// bare handler), metrics with tracing off, and tracing with a real batch
// exporter (discarding) at 1 % and 100 % sampling of requests that arrive
// without a trace context. docs/performance.md relates it to the CPU of a
// like.
func BenchmarkMiddleware(b *testing.B) {
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"changed":true,"count":"1"}`)
	})
	run := func(b *testing.B, h http.Handler) {
		b.ReportAllocs()
		before := cpuTime()
		defer func() { b.ReportMetric(float64(cpuTime()-before)/float64(b.N), "cpu-ns/op") }()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req := httptest.NewRequest(http.MethodPost, likePath, strings.NewReader(`{}`))
				req.Header.Set("Content-Type", "application/json")
				h.ServeHTTP(httptest.NewRecorder(), req)
			}
		})
	}
	wrapped := Middleware([]string{"highgopress.counter.v1.CounterService"})(bare)
	b.Run("none", func(b *testing.B) { run(b, bare) })
	b.Run("metrics", func(b *testing.B) { run(b, wrapped) })
	for _, ratio := range []float64{0.01, 1} {
		name := "tracing=1%"
		if ratio == 1 {
			name = "tracing=100%"
		}
		b.Run(name, func(b *testing.B) {
			tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()),
				sdktrace.WithSampler(Config{Sampler: "parentbased_traceidratio", Ratio: ratio}.sampler()))
			prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
			otel.SetTracerProvider(tp)
			otel.SetTextMapPropagator(propagation.TraceContext{})
			enabled.Store(true)
			defer func() {
				enabled.Store(false)
				otel.SetTracerProvider(prevTP)
				otel.SetTextMapPropagator(prevProp)
				_ = tp.Shutdown(context.Background())
			}()
			run(b, wrapped)
		})
	}
}

// cpuTime is the process's user+system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
