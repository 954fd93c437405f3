package backends

import "github.com/highgopress/highgopress/platform/discovery"

// Option configures a Consul balancer.
type Option func(*options)

type options struct {
	tag          string
	watchOpts    []discovery.WatchOption
	balancerOpts []discovery.BalancerOption
}

// WithTag routes only to instances carrying this Consul tag.
func WithTag(tag string) Option { return func(o *options) { o.tag = tag } }

// WithWatchOptions passes options to every watcher.
func WithWatchOptions(opts ...discovery.WatchOption) Option {
	return func(o *options) { o.watchOpts = append(o.watchOpts, opts...) }
}

// WithBalancerOptions passes options to the balancer (after the default
// ejection test, IsInstanceFailure, which discovery.WithEjectOn replaces).
func WithBalancerOptions(opts ...discovery.BalancerOption) Option {
	return func(o *options) { o.balancerOpts = append(o.balancerOpts, opts...) }
}
