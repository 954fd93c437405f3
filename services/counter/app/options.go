package app

import "time"

// Option configures a Service.
type Option func(*options)

type options struct {
	cacheTTL     time.Duration
	cacheEntries int
}

// DefaultCacheTTL is how long read counts are served from memory.
const DefaultCacheTTL = 100 * time.Millisecond

func defaultOptions() options {
	return options{cacheTTL: DefaultCacheTTL}
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
