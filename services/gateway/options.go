package gateway

import (
	"net/http"

	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/services/gateway/apistats"
	"github.com/highgopress/highgopress/services/gateway/auth"
	"github.com/highgopress/highgopress/services/gateway/backends"
	"github.com/highgopress/highgopress/services/gateway/proxy"
	"github.com/highgopress/highgopress/services/gateway/route"
)

// Option configures a Gateway.
type Option func(*options)

type options struct {
	balancer   proxy.Balancer
	routes     *route.Table
	serverOpts []server.Option
	authOpts   []auth.Option
	proxyOpts  []proxy.Option
	admit      Admission
	statsSink  apistats.Sink
	statsOpts  []apistats.Option
	consulOpts []backends.Option
}

// Admission decides whether an authenticated (or anonymous, for reads)
// request may proceed, for example a per-user rate limit. It runs after
// authentication and before the body is read. When it returns false it has
// written the response itself.
type Admission func(w http.ResponseWriter, r *http.Request, rt route.Route, subject string) bool

// WithBalancer replaces the balancer otherwise built from configuration
// (Consul's catalog when Config.Consul is enabled, else the static
// round-robin over Config.CounterURLs).
func WithBalancer(b proxy.Balancer) Option { return func(o *options) { o.balancer = b } }

// WithRoutes replaces the default procedure table.
func WithRoutes(t *route.Table) Option { return func(o *options) { o.routes = t } }

// WithServerOptions adds options to the public server, after the gateway's
// own limits.
func WithServerOptions(opts ...server.Option) Option {
	return func(o *options) { o.serverOpts = append(o.serverOpts, opts...) }
}

// WithAuthOptions adds options to the token verifier.
func WithAuthOptions(opts ...auth.Option) Option {
	return func(o *options) { o.authOpts = append(o.authOpts, opts...) }
}

// WithProxyOptions adds options to the forwarding proxy.
func WithProxyOptions(opts ...proxy.Option) Option {
	return func(o *options) { o.proxyOpts = append(o.proxyOpts, opts...) }
}

// WithAdmission installs an Admission check. It runs after the per-user
// rate limit (when rate limiting is on).
func WithAdmission(a Admission) Option { return func(o *options) { o.admit = a } }

// WithStatsSink sends API statistics to sink instead of the one chosen from
// configuration (Kafka when HGP_KAFKA_BROKERS is set, else the log).
func WithStatsSink(sink apistats.Sink) Option { return func(o *options) { o.statsSink = sink } }

// WithStatsOptions adds options to the API statistics recorder.
func WithStatsOptions(opts ...apistats.Option) Option {
	return func(o *options) { o.statsOpts = append(o.statsOpts, opts...) }
}

// WithConsulOptions adds options to the Consul balancer (used when
// Config.Consul is enabled and no WithBalancer is given).
func WithConsulOptions(opts ...backends.Option) Option {
	return func(o *options) { o.consulOpts = append(o.consulOpts, opts...) }
}
