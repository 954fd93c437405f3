package settle

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Option configures a Worker.
type Option func(*options)

type options struct {
	interval   time.Duration
	catchUp    time.Duration
	lease      time.Duration
	batch      int
	registerer prometheus.Registerer
}

// DefaultDelay is how long after a rebuild it is due for settling: time for
// events a relay held when Redis lost its data to reach Kafka.
const DefaultDelay = 2 * time.Second

func defaultOptions() options {
	return options{
		interval:   500 * time.Millisecond,
		catchUp:    20 * time.Second,
		lease:      time.Minute,
		batch:      200,
		registerer: prometheus.DefaultRegisterer,
	}
}

// WithInterval sets how often the queue is looked at, and how long a target
// whose older events are not all in MySQL yet is postponed (default 500ms).
func WithInterval(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.interval = d
		}
	}
}

// WithCatchUp bounds one wait for the consumer to apply what is in Kafka
// (default 20s); the targets are postponed when it is exceeded.
func WithCatchUp(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.catchUp = d
		}
	}
}

// WithBatch sets how many targets one pass takes (default 200).
func WithBatch(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.batch = n
		}
	}
}

// WithRegisterer sets where the worker's metrics are registered (default
// prometheus.DefaultRegisterer; nil disables registration).
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }
