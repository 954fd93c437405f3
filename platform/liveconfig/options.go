package liveconfig

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type options struct {
	wait        time.Duration
	callTimeout time.Duration
	minBackoff  time.Duration
	maxBackoff  time.Duration
	reg         prometheus.Registerer
}

func defaultOptions() options {
	return options{
		wait:        30 * time.Second,
		callTimeout: 5 * time.Second,
		minBackoff:  250 * time.Millisecond,
		maxBackoff:  10 * time.Second,
	}
}

// Option configures a Watcher.
type Option func(*options)

// WithWait sets the longest time one blocking query waits for a change
// (default 30s). Changes are seen at once whatever its value.
func WithWait(d time.Duration) Option { return func(o *options) { o.wait = d } }

// WithBackoff bounds the retry delay while Consul is unreachable (defaults
// 250ms, doubling to 10s).
func WithBackoff(minDelay, maxDelay time.Duration) Option {
	return func(o *options) { o.minBackoff, o.maxBackoff = minDelay, maxDelay }
}

// WithRegisterer registers the watcher's metrics with reg.
func WithRegisterer(reg prometheus.Registerer) Option { return func(o *options) { o.reg = reg } }
