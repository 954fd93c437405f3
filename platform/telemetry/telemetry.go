// Package telemetry is what every service reports about itself: RED metrics
// of every RPC (requests, errors by Connect code, latency, in-flight) through
// one HTTP middleware that platform/server puts in front of every service,
// OpenTelemetry tracing configured only by the standard OTEL_* environment
// variables, and log lines that carry the trace and span ids of the request
// they were logged for.
//
// Tracing is off (a no-op tracer, no exporter, no cost beyond header
// propagation) unless OTEL_EXPORTER_OTLP_ENDPOINT,
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_TRACES_EXPORTER is set; see
// Setup and docs/observability.md.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of every span the project makes.
const ScopeName = "github.com/highgopress/highgopress"

// Tracer returns the project's tracer from the global provider (a no-op
// tracer while tracing is off).
func Tracer() trace.Tracer { return otel.Tracer(ScopeName) }

// Config is the tracing configuration read from the OTEL_* variables.
type Config struct {
	// Enabled: an exporter was asked for (OTEL_EXPORTER_OTLP_ENDPOINT,
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_TRACES_EXPORTER) and
	// OTEL_SDK_DISABLED is not true.
	Enabled bool
	// Exporter is otlp (OTLP over HTTP/protobuf) or console (JSON on stderr).
	Exporter string
	// Sampler is the OTEL_TRACES_SAMPLER value (parentbased_traceidratio
	// when unset) and Ratio its OTEL_TRACES_SAMPLER_ARG (1 when unset).
	Sampler string
	Ratio   float64
}

// ConfigFrom reads the configuration; every bad value is an error naming
// its variable.
func ConfigFrom(getenv func(string) string) (Config, error) {
	var errs []error
	c := Config{Exporter: "otlp", Sampler: "parentbased_traceidratio", Ratio: 1}
	exporter := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")))
	endpoint := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT")) != "" ||
		strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) != ""
	c.Enabled = exporter != "" || endpoint
	switch exporter {
	case "", "otlp":
	case "console":
		c.Exporter = "console"
	case "none":
		c.Enabled = false
	default:
		errs = append(errs, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: want otlp, console or none", exporter))
	}
	if v := strings.TrimSpace(getenv("OTEL_SDK_DISABLED")); strings.EqualFold(v, "true") {
		c.Enabled = false
	}
	proto := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
	if proto == "" {
		proto = strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))
	}
	if proto != "" && proto != "http/protobuf" && c.Enabled && c.Exporter == "otlp" {
		errs = append(errs, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: only http/protobuf is built in (port 4318)", proto))
	}
	if v := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER"))); v != "" {
		switch v {
		case "always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio":
			c.Sampler = v
		default:
			errs = append(errs, fmt.Errorf("OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio or parentbased_ of one of them", v))
		}
	}
	if v := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG")); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r < 0 || r > 1 {
			errs = append(errs, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q: want a ratio in [0, 1]", v))
		} else {
			c.Ratio = r
		}
	}
	return c, errors.Join(errs...)
}

// sampler builds the configured sampler. Ratio roots are link-aware: a
// span without a parent (a relay batch, a consumer batch) is also sampled
// when one of its links is, so the batch that carried a sampled request
// is always recorded next to it.
func (c Config) sampler() sdktrace.Sampler {
	ratio := linkAware{sdktrace.TraceIDRatioBased(c.Ratio)}
	switch c.Sampler {
	case "always_on":
		return sdktrace.AlwaysSample()
	case "always_off":
		return sdktrace.NeverSample()
	case "traceidratio":
		return ratio
	case "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample())
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample())
	default:
		return sdktrace.ParentBased(ratio)
	}
}

// Setup installs the W3C trace-context propagator and, when c asks for
// it, a tracer provider exporting the spans of service (OTEL_SERVICE_NAME
// and OTEL_RESOURCE_ATTRIBUTES override and extend the resource). The
// returned function flushes and stops the exporter; it is never nil.
func Setup(ctx context.Context, logger *slog.Logger, service string, c Config) (func(context.Context) error, error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	noop := func(context.Context) error { return nil }
	if !c.Enabled {
		return noop, nil
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch c.Exporter {
	case "console":
		exp, err = stdouttrace.New(stdouttrace.WithWriter(os.Stderr))
	default:
		exp, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return noop, fmt.Errorf("trace exporter %s: %w", c.Exporter, err)
	}
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", service)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES win
	)
	if err != nil {
		return noop, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp), // OTEL_BSP_* tune the batch
		sdktrace.WithResource(res),
		sdktrace.WithSampler(c.sampler()),
	)
	otel.SetTracerProvider(tp)
	enabled.Store(true)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("tracing", "err", err)
	}))
	logger.Info("tracing on", "exporter", c.Exporter, "sampler", c.Sampler, "ratio", c.Ratio)
	return func(ctx context.Context) error {
		enabled.Store(false)
		return tp.Shutdown(ctx)
	}, nil
}

// linkAware samples a root span when one of its links is sampled, and
// otherwise asks root.
type linkAware struct{ root sdktrace.Sampler }

func (s linkAware) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	for _, l := range p.Links {
		if l.SpanContext.IsSampled() {
			return sdktrace.SamplingResult{
				Decision:   sdktrace.RecordAndSample,
				Tracestate: trace.SpanContextFromContext(p.ParentContext).TraceState(),
			}
		}
	}
	return s.root.ShouldSample(p)
}

func (s linkAware) Description() string { return "LinkAware{" + s.root.Description() + "}" }
