package watch

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Option configures a Hub.
type Option func(*options)

type options struct {
	maxPerClient int
	maxTotal     int
	buffer       int
	interval     time.Duration
	poll         time.Duration
	registerer   prometheus.Registerer
}

// Defaults.
const (
	DefaultMaxPerClient = 16
	DefaultMaxTotal     = 10000
	DefaultBuffer       = 8
	DefaultInterval     = 250 * time.Millisecond
	DefaultPoll         = 5 * time.Second
)

func defaultOptions() options {
	return options{
		maxPerClient: DefaultMaxPerClient, maxTotal: DefaultMaxTotal, buffer: DefaultBuffer,
		interval: DefaultInterval, poll: DefaultPoll, registerer: prometheus.DefaultRegisterer,
	}
}

// WithLimits caps the subscriptions of one client and of the replica
// (HGP_ANALYTICS_WATCH_PER_CLIENT, HGP_ANALYTICS_WATCH_MAX).
func WithLimits(perClient, total int) Option {
	return func(o *options) {
		if perClient > 0 {
			o.maxPerClient = perClient
		}
		if total > 0 {
			o.maxTotal = total
		}
	}
}

// WithBuffer sets how many rankings may wait for a subscriber before it is
// dropped as too slow (HGP_ANALYTICS_WATCH_BUFFER, default 8).
func WithBuffer(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.buffer = n
		}
	}
}

// WithInterval sets the shortest time between two computations of one
// ranking (HGP_ANALYTICS_WATCH_INTERVAL, default 250ms: at most four
// messages a second per stream).
func WithInterval(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.interval = d
		}
	}
}

// WithPoll sets the longest time between two computations of one ranking
// without a change notification (HGP_ANALYTICS_WATCH_POLL, default 5s).
func WithPoll(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.poll = d
		}
	}
}

// WithRegisterer sets where metrics are registered (nil: nowhere).
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }
