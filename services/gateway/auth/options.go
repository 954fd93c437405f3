package auth

import "time"

// Option configures a Verifier.
type Option func(*options)

type options struct {
	now       func() time.Time
	cacheSize int
}

// WithClock makes the Verifier read the time from now (tests).
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithCacheSize sets how many verified tokens are remembered until they
// expire (default DefaultCacheSize; 0 verifies every token in full).
func WithCacheSize(n int) Option {
	return func(o *options) { o.cacheSize = n }
}
