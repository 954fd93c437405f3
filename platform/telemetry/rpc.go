package telemetry

import (
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	platformmetrics "github.com/highgopress/highgopress/platform/metrics"
)

// LatencyBuckets are the classic buckets of the RPC latency histogram,
// dense around the 1–50 ms where the services' targets are (p99 ≤ 5 ms on
// the like path). The histogram is also a native one (factor 1.1) for
// scrapers that ask for it.
var LatencyBuckets = []float64{
	.0005, .001, .002, .003, .004, .005, .0075, .01, .015, .02, .025, .05, .1, .25, .5, 1, 2.5, 5,
}

// UnknownProcedure is the procedure label of paths that are not a
// procedure of the server (bounded label cardinality: what a client sends
// never becomes a label).
const UnknownProcedure = "unknown"

// rpcMetrics are the RED collectors, one set per process.
type rpcMetrics struct {
	requests *prometheus.CounterVec   // procedure, protocol, code
	duration *prometheus.HistogramVec // procedure, protocol
	inFlight *prometheus.GaugeVec     // procedure
}

var (
	rpcOnce sync.Once
	rpc     *rpcMetrics
)

// metrics returns the process's RED collectors, registered once with the
// default registry (which /metrics serves with the Go runtime and process
// collectors).
func metrics() *rpcMetrics {
	rpcOnce.Do(func() {
		reg := prometheus.DefaultRegisterer
		rpc = &rpcMetrics{
			requests: platformmetrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "hgp_rpc_server_requests_total",
				Help: "RPCs answered, by procedure, protocol (connect, grpc, grpc_web) and Connect code (ok for success).",
			}, []string{"procedure", "protocol", "code"})),
			duration: platformmetrics.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
				Name:                            "hgp_rpc_server_duration_seconds",
				Help:                            "Time from a request's arrival to the end of its response, by procedure and protocol.",
				Buckets:                         LatencyBuckets,
				NativeHistogramBucketFactor:     1.1,
				NativeHistogramMaxBucketNumber:  160,
				NativeHistogramMinResetDuration: time.Hour,
			}, []string{"procedure", "protocol"})),
			inFlight: platformmetrics.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
				Name: "hgp_rpc_server_in_flight",
				Help: "RPCs being handled, by procedure.",
			}, []string{"procedure"})),
		}
	})
	return rpc
}

// procedure is one label value with its pre-resolved collectors.
type procedure struct {
	name     string
	service  string
	method   string
	traced   bool
	inFlight prometheus.Gauge
	duration [numProtocols]prometheus.Observer
	ok       [numProtocols]prometheus.Counter
}

// untraced services answer probes and tooling, not users: measured, never
// traced.
var untraced = map[string]bool{
	"grpc.health.v1.Health":                    true,
	"grpc.reflection.v1.ServerReflection":      true,
	"grpc.reflection.v1alpha.ServerReflection": true,
}

// Middleware returns the RED and tracing middleware for a server of
// services (fully-qualified protobuf service names, whose methods are
// looked up in the global protobuf registry; gRPC health and reflection
// are always known). It belongs outermost, so rejections by
// authentication or rate limiting are measured and traced too.
//
// Every request is counted by procedure (its path when it is a method of
// one of services, else "unknown"), protocol and Connect code, timed, and
// held in the in-flight gauge. With tracing on, it also starts a server
// span (the parent taken from the incoming traceparent) and rewrites the
// request's traceparent header to that span, so whatever the handler
// forwards or stores (the gateway's proxy, the counter's outbox) carries
// it.
func Middleware(services []string) func(http.Handler) http.Handler {
	m := metrics()
	procs := map[string]*procedure{}
	names := append(append([]string{}, services...), "grpc.health.v1.Health",
		"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection")
	for _, svc := range names {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
		if err != nil {
			continue
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			continue
		}
		for i := 0; i < sd.Methods().Len(); i++ {
			method := string(sd.Methods().Get(i).Name())
			path := "/" + svc + "/" + method
			procs[path] = newProcedure(m, path, svc, method, !untraced[svc])
		}
	}
	unknown := newProcedure(m, UnknownProcedure, "", "", false)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			p := procs[r.URL.Path]
			if p == nil {
				p = unknown
			}
			proto := ProtocolOf(r)
			p.inFlight.Inc()
			obs := NewResponseObserver(w, proto)
			var span trace.Span
			if p.traced && Enabled() {
				r, span = startServerSpan(r, p, proto)
			}
			defer func() {
				code := obs.Code()
				if code == "ok" {
					p.ok[proto].Inc()
				} else {
					m.requests.WithLabelValues(p.name, proto.Label(), code).Inc()
				}
				p.duration[proto].Observe(time.Since(start).Seconds())
				p.inFlight.Dec()
				if span != nil {
					span.SetAttributes(attribute.String("rpc.connect_rpc.error_code", code))
					if code != "ok" {
						span.SetStatus(codes.Error, code)
					}
					span.End()
				}
			}()
			next.ServeHTTP(obs, r)
		})
	}
}

func newProcedure(m *rpcMetrics, name, service, method string, traced bool) *procedure {
	p := &procedure{name: name, service: service, method: method, traced: traced,
		inFlight: m.inFlight.WithLabelValues(name)}
	for proto := Protocol(0); proto < numProtocols; proto++ {
		p.duration[proto] = m.duration.WithLabelValues(name, proto.Label())
		p.ok[proto] = m.requests.WithLabelValues(name, proto.Label(), "ok")
	}
	return p
}

// startServerSpan starts the server span of a request (named like
// otelconnect's: "<service>/<method>", with its rpc.* attributes) and
// points the request's traceparent at it.
func startServerSpan(r *http.Request, p *procedure, proto Protocol) (*http.Request, trace.Span) {
	prop := otel.GetTextMapPropagator()
	ctx := prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	system := "connect_rpc"
	if proto == ProtocolGRPC || proto == ProtocolGRPCWeb {
		system = "grpc"
	}
	ctx, span := Tracer().Start(ctx, strings.TrimPrefix(p.name, "/"),
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("rpc.system", system),
			attribute.String("rpc.service", p.service),
			attribute.String("rpc.method", p.method),
			attribute.String("rpc.protocol", proto.Label()),
		))
	r = r.WithContext(ctx)
	prop.Inject(ctx, propagation.HeaderCarrier(r.Header))
	return r, span
}
