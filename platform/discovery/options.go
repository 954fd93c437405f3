package discovery

import "time"

// RegisterOption configures Register and RegistrationWorker.
type RegisterOption func(*registerOptions)

type registerOptions struct {
	resync      time.Duration
	callTimeout time.Duration
}

func newRegisterOptions(opts []RegisterOption) registerOptions {
	o := registerOptions{resync: 10 * time.Second, callTimeout: 5 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithResyncInterval sets how often the registration is checked on the agent
// and restored if the agent forgot it (default 10s).
func WithResyncInterval(d time.Duration) RegisterOption {
	return func(o *registerOptions) {
		if d > 0 {
			o.resync = d
		}
	}
}

// WithRegisterCallTimeout bounds each call to the agent (default 5s).
func WithRegisterCallTimeout(d time.Duration) RegisterOption {
	return func(o *registerOptions) {
		if d > 0 {
			o.callTimeout = d
		}
	}
}

// WatchOption configures a Watcher.
type WatchOption func(*watchOptions)

type watchOptions struct {
	waitTime    time.Duration
	minInterval time.Duration
	maxBackoff  time.Duration
	callTimeout time.Duration
	tag         string
	scheme      string
	allowStale  bool
}

func defaultWatchOptions() watchOptions {
	return watchOptions{
		waitTime:    30 * time.Second,
		minInterval: 100 * time.Millisecond,
		maxBackoff:  5 * time.Second,
		callTimeout: 5 * time.Second,
		scheme:      "http",
	}
}

// WithWaitTime sets the blocking query's maximum wait (default 30s). Changes
// are delivered as soon as they happen regardless of it.
func WithWaitTime(d time.Duration) WatchOption {
	return func(o *watchOptions) {
		if d > 0 {
			o.waitTime = d
		}
	}
}

// WithMinInterval rate-limits the watch loop: at most one query per d
// (default 100ms), so a flapping service cannot make the gateway hammer
// Consul.
func WithMinInterval(d time.Duration) WatchOption {
	return func(o *watchOptions) {
		if d > 0 {
			o.minInterval = d
		}
	}
}

// WithMaxBackoff caps the delay between retries while Consul is unreachable
// (default 5s).
func WithMaxBackoff(d time.Duration) WatchOption {
	return func(o *watchOptions) {
		if d > 0 {
			o.maxBackoff = d
		}
	}
}

// WithTag only watches instances carrying tag.
func WithTag(tag string) WatchOption { return func(o *watchOptions) { o.tag = tag } }

// WithScheme sets the scheme of instance URLs (default "http").
func WithScheme(scheme string) WatchOption { return func(o *watchOptions) { o.scheme = scheme } }

// WithAllowStale lets any Consul server answer (cheaper, possibly slightly
// behind the leader).
func WithAllowStale(v bool) WatchOption { return func(o *watchOptions) { o.allowStale = v } }

// BalancerOption configures a Balancer.
type BalancerOption func(*balancerOptions)

type balancerOptions struct {
	cooldown    time.Duration
	maxCooldown time.Duration
	ejectOn     func(error) bool
	onEject     func(service string)
	now         func() time.Time
}

func defaultBalancerOptions() balancerOptions {
	return balancerOptions{
		cooldown:    5 * time.Second,
		maxCooldown: 30 * time.Second,
		ejectOn:     IsConnectionError,
		now:         time.Now,
	}
}

// WithCooldown sets how long an instance stays ejected after its first
// connection error (default 5s) and the cap for repeated failures (default
// 30s); the cooldown doubles per consecutive failure.
func WithCooldown(first, limit time.Duration) BalancerOption {
	return func(o *balancerOptions) {
		if first > 0 {
			o.cooldown = first
		}
		o.maxCooldown = max(limit, o.cooldown)
	}
}

// WithEjectOn replaces the test deciding which errors passed to
// Backend.Done eject the instance (default IsConnectionError).
func WithEjectOn(f func(error) bool) BalancerOption {
	return func(o *balancerOptions) {
		if f != nil {
			o.ejectOn = f
		}
	}
}

// WithOnEject calls f with the service's name each time one of its
// instances is taken out of rotation (not again while it stays ejected):
// for metrics. f must be cheap and safe for concurrent use.
func WithOnEject(f func(service string)) BalancerOption {
	return func(o *balancerOptions) { o.onEject = f }
}

// withClock is for tests.
func withClock(now func() time.Time) BalancerOption { return func(o *balancerOptions) { o.now = now } }
