package proxy

import (
	"net/http"
	"time"
)

// Option configures a Proxy.
type Option func(*options)

type options struct {
	transport      http.RoundTripper
	attempts       int
	attemptTimeout time.Duration
	maxHeaderBytes int
}

// WithTransport sets the transport to backends (default: the platform's h2c
// transport, which carries gRPC trailers and streams).
func WithTransport(t http.RoundTripper) Option { return func(o *options) { o.transport = t } }

// WithMaxAttempts bounds how many instances one request may be sent to
// (default 2; see Target.Retry for which requests are retried).
func WithMaxAttempts(n int) Option { return func(o *options) { o.attempts = n } }

// WithAttemptTimeout bounds each attempt on one instance (0, the default:
// only the request's deadline bounds it): the wait for the response headers
// of a streaming RPC, for the whole response of a unary one. The request's
// own deadline still caps it. An attempt that times out is reported to the
// balancer with ErrAttemptTimeout (an instance failure); a read is then
// retried on another instance, a write fails Unavailable (it may have been
// applied, so it is never retried).
func WithAttemptTimeout(d time.Duration) Option { return func(o *options) { o.attemptTimeout = d } }

// WithMaxHeaderBytes sets the largest request header list (and trailer
// list) the proxy forwards, counted as HTTP/2 counts it (default
// DefaultMaxHeaderBytes). Larger requests fail with ErrHeadersTooLarge
// before any instance is picked.
func WithMaxHeaderBytes(n int) Option { return func(o *options) { o.maxHeaderBytes = n } }

// RoundRobinOption configures a RoundRobin balancer.
type RoundRobinOption func(*rrOptions)

type rrOptions struct {
	cooldown time.Duration
	now      func() time.Time
	onEject  func(service string)
}

// WithCooldown sets how long an instance that refused a connection is
// skipped (default 5s). Instances are skipped only while another is usable.
func WithCooldown(d time.Duration) RoundRobinOption {
	return func(o *rrOptions) { o.cooldown = d }
}

// WithClock sets the balancer's clock (tests).
func WithClock(now func() time.Time) RoundRobinOption {
	return func(o *rrOptions) { o.now = now }
}

// WithOnEject calls f with the service's name each time one of its
// instances starts a cooldown (not again while it is skipped): for metrics.
func WithOnEject(f func(service string)) RoundRobinOption {
	return func(o *rrOptions) { o.onEject = f }
}
