package reconcile

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
)

// Option configures a Reconciler.
type Option func(*options)

type options struct {
	registerer prometheus.Registerer
	quiescent  func(ctx context.Context) error
}

// WithRegisterer sets where metrics are registered (default
// prometheus.DefaultRegisterer; nil disables registration).
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }

// WithQuiescent sets the check that nothing is in flight between Redis and
// MySQL (outbox empty, consumer group caught up). Repair runs only when it
// returns nil both before and after the comparison. Without it Repair only
// rebuilds keys that are missing from Redis entirely.
func WithQuiescent(f func(ctx context.Context) error) Option {
	return func(o *options) { o.quiescent = f }
}
