package gateway

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	platformmetrics "github.com/highgopress/highgopress/platform/metrics"
	"github.com/highgopress/highgopress/services/gateway/backends"
	"github.com/highgopress/highgopress/services/gateway/proxy"
)

// The gateway's upstream metrics are labelled by backend service (counter,
// analytics), never by instance address: how calls spread over instances
// shows in each instance's own RPC metrics (hgp_rpc_server_requests_total,
// labelled with its scrape target by Prometheus).
var (
	upstreamAttempts = platformmetrics.Register(prometheus.DefaultRegisterer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hgp_gateway_upstream_attempts_total",
		Help: "Forwarding attempts by backend service and result: ok (the instance answered, whatever the RPC's code), instance_failure (connection refused, reset or lost, or no answer within the attempt timeout: ejects the instance), canceled (the caller's cancellation or deadline), error (another transport error), no_instance (none to send to).",
	}, []string{"service", "result"}))
	upstreamRetries = platformmetrics.Register(prometheus.DefaultRegisterer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hgp_gateway_upstream_retries_total",
		Help: "Calls sent again to another instance after a failed attempt (reads; writes only when the connection could not be opened), by backend service.",
	}, []string{"service"}))
	upstreamEjections = platformmetrics.Register(prometheus.DefaultRegisterer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hgp_gateway_upstream_ejections_total",
		Help: "Instances taken out of rotation after a connection failure or an attempt timeout, by backend service.",
	}, []string{"service"}))
	upstreamStreams = platformmetrics.Register(prometheus.DefaultRegisterer, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hgp_gateway_upstream_streams",
		Help: "Server streams being forwarded to an instance, by backend service.",
	}, []string{"service"}))
)

// Upstream results (hgp_gateway_upstream_attempts_total's result label).
const (
	resultOK              = "ok"
	resultInstanceFailure = "instance_failure"
	resultCanceled        = "canceled"
	resultError           = "error"
	resultNoInstance      = "no_instance"
)

var upstreamResults = []string{resultOK, resultInstanceFailure, resultCanceled, resultError, resultNoInstance}

// upstreamSeries are one backend service's collectors, resolved once.
type upstreamSeries struct {
	results            map[string]prometheus.Counter
	retries, ejections prometheus.Counter
	streams            prometheus.Gauge
}

func newUpstreamSeries(service string) *upstreamSeries {
	s := &upstreamSeries{
		results:   make(map[string]prometheus.Counter, len(upstreamResults)),
		retries:   upstreamRetries.WithLabelValues(service),
		ejections: upstreamEjections.WithLabelValues(service),
		streams:   upstreamStreams.WithLabelValues(service),
	}
	for _, r := range upstreamResults {
		s.results[r] = upstreamAttempts.WithLabelValues(service, r)
	}
	return s
}

// meteredBalancer counts what a Balancer hands out: attempts and their
// results, retries to another instance, forwarded streams. It is always an
// ExcludingBalancer (falling back to Pick when the wrapped one is not, as
// the proxy itself does), so it sees every retry.
type meteredBalancer struct {
	inner    proxy.Balancer
	excl     proxy.ExcludingBalancer // nil when inner cannot exclude
	services map[string]*upstreamSeries
}

// newMeteredBalancer returns the metrics of the given backend services
// (their series exist from the start, at 0; a service outside them is not
// counted), to wrap a balancer with wrap.
func newMeteredBalancer(services []string) *meteredBalancer {
	m := &meteredBalancer{services: make(map[string]*upstreamSeries, len(services))}
	for _, s := range services {
		m.services[s] = newUpstreamSeries(s)
	}
	return m
}

// wrap makes m count what b hands out.
func (m *meteredBalancer) wrap(b proxy.Balancer) *meteredBalancer {
	m.inner = b
	m.excl, _ = b.(proxy.ExcludingBalancer)
	return m
}

// countEjection is the balancers' ejection hook.
func (m *meteredBalancer) countEjection(service string) {
	if s := m.services[service]; s != nil {
		s.ejections.Inc()
	}
}

// Pick implements proxy.Balancer.
func (m *meteredBalancer) Pick(ctx context.Context, service string) (proxy.Backend, error) {
	b, err := m.inner.Pick(ctx, service)
	return m.observe(ctx, service, b, err), err
}

// PickExcluding implements proxy.ExcludingBalancer: the proxy calls it for
// a retry. It is one only when another instance than the failed one is
// handed out (the proxy gives up otherwise).
func (m *meteredBalancer) PickExcluding(ctx context.Context, service, hostPort string) (proxy.Backend, error) {
	var (
		b   proxy.Backend
		err error
	)
	if m.excl != nil {
		b, err = m.excl.PickExcluding(ctx, service, hostPort)
	} else {
		b, err = m.inner.Pick(ctx, service)
	}
	if s := m.services[service]; s != nil && err == nil && b.URL != nil && b.URL.Host != hostPort {
		s.retries.Inc()
	}
	return m.observe(ctx, service, b, err), err
}

// observe counts a pick and wraps its Done to count the attempt's result
// (and, for a stream, how long it is forwarded).
func (m *meteredBalancer) observe(ctx context.Context, service string, b proxy.Backend, err error) proxy.Backend {
	s := m.services[service]
	if s == nil {
		return b
	}
	if err != nil {
		if errors.Is(err, proxy.ErrNoBackend) {
			s.results[resultNoInstance].Inc()
		} else {
			s.results[upstreamResult(err)].Inc()
		}
		return b
	}
	t, _ := proxy.TargetOf(ctx)
	stream := !t.Unary && t.Service != ""
	if stream {
		s.streams.Inc()
	}
	done := b.Done
	var once atomic.Bool
	b.Done = func(err error) {
		if !once.CompareAndSwap(false, true) {
			return
		}
		if stream {
			s.streams.Dec()
		}
		s.results[upstreamResult(err)].Inc()
		if done != nil {
			done(err)
		}
	}
	return b
}

// upstreamResult classifies an attempt's outcome as Backend.Done reports it.
func upstreamResult(err error) string {
	switch {
	case err == nil:
		return resultOK
	case backends.IsInstanceFailure(err):
		return resultInstanceFailure
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return resultCanceled
	}
	return resultError
}
