package auth

import "time"

// Option configures a Verifier.
type Option func(*options)

type options struct {
	now func() time.Time
}

// WithClock makes the Verifier read the time from now (tests).
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}
