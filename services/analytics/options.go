package analytics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/highgopress/highgopress/services/analytics/redisstore"
	"github.com/highgopress/highgopress/services/analytics/watch"
	"github.com/highgopress/highgopress/services/analytics/window"
)

// Option configures an Analytics built with New.
type Option func(*options)

type options struct {
	store       []redisstore.Option
	watch       []watch.Option
	clock       window.Clock
	sendTimeout time.Duration
	registerer  prometheus.Registerer
}

func defaultOptions() options {
	return options{clock: window.System, sendTimeout: DefaultSendTimeout, registerer: prometheus.DefaultRegisterer}
}

// WithStoreOptions passes options to the Redis store.
func WithStoreOptions(opts ...redisstore.Option) Option {
	return func(o *options) { o.store = append(o.store, opts...) }
}

// WithWatchOptions passes options to the watch hub.
func WithWatchOptions(opts ...watch.Option) Option {
	return func(o *options) { o.watch = append(o.watch, opts...) }
}

// WithClock sets the clock of the windows (default the system clock).
func WithClock(c window.Clock) Option { return func(o *options) { o.clock = c } }

// WithSendTimeout bounds each message sent on a watch stream
// (HGP_ANALYTICS_WATCH_SEND_TIMEOUT, default 10s).
func WithSendTimeout(d time.Duration) Option { return func(o *options) { o.sendTimeout = d } }

// WithRegisterer sets where metrics are registered (nil: nowhere).
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }
