package app

import "time"

// Option configures a Service.
type Option func(*options)

type options struct {
	cacheTTL     time.Duration
	cacheEntries int
	durable      Durable
	seeder       Seeder
	loadTimeout  time.Duration
}

// DefaultLoadTimeout bounds one rebuild of an item's or user's state.
const DefaultLoadTimeout = 10 * time.Second

// DefaultCacheTTL is how long read counts are served from memory.
const DefaultCacheTTL = 100 * time.Millisecond

func defaultOptions() options {
	return options{cacheTTL: DefaultCacheTTL, loadTimeout: DefaultLoadTimeout}
}

// WithCacheTTL sets how long counts are cached; 0 disables the cache.
func WithCacheTTL(d time.Duration) Option {
	return func(o *options) {
		if d >= 0 {
			o.cacheTTL = d
		}
	}
}

// WithCacheEntries bounds the number of cached items and users (each).
func WithCacheEntries(n int) Option { return func(o *options) { o.cacheEntries = n } }

// WithDurable makes the service rebuild state the store reports missing
// (domain.ErrNotLoaded) from durable, installing it with seeder, and then
// run the operation again. Concurrent requests for one item or user share
// one rebuild per instance. Without it such errors are returned as they are.
func WithDurable(durable Durable, seeder Seeder) Option {
	return func(o *options) {
		if durable != nil && seeder != nil {
			o.durable, o.seeder = durable, seeder
		}
	}
}

// WithLoadTimeout bounds one rebuild (default 10s; values <= 0 are ignored).
func WithLoadTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.loadTimeout = d
		}
	}
}
