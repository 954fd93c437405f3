package watch

import "time"

// Defaults of the options.
const (
	// DefaultInterval is the shortest time between two reads of changed
	// items (WithInterval): a hot item is sent at most this often.
	DefaultInterval = 50 * time.Millisecond
	// DefaultMaxStreams caps the streams of one replica (WithMaxStreams).
	DefaultMaxStreams = 10_000
	// DefaultMaxPerClient caps the streams of one client (WithMaxPerClient).
	DefaultMaxPerClient = 16
	// DefaultRetry is the wait before reading again after a failed read.
	DefaultRetry = 500 * time.Millisecond
)

// Option configures a Hub.
type Option func(*options)

type options struct {
	interval     time.Duration
	maxStreams   int
	maxPerClient int
	retry        time.Duration
}

func defaultOptions() options {
	return options{
		interval:     DefaultInterval,
		maxStreams:   DefaultMaxStreams,
		maxPerClient: DefaultMaxPerClient,
		retry:        DefaultRetry,
	}
}

// WithInterval sets the coalescing interval: changed items are read (and
// sent) at most once per interval, however often they change. A change
// after a quiet interval is read at once.
func WithInterval(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.interval = d
		}
	}
}

// WithMaxStreams caps the streams open at once on this replica; further
// ones fail with ErrTooManyStreams.
func WithMaxStreams(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxStreams = n
		}
	}
}

// WithMaxPerClient caps the streams one client (see Watch) may have open
// at once; further ones fail with ErrTooManyStreams.
func WithMaxPerClient(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxPerClient = n
		}
	}
}

// WithRetry sets the wait before changed items are read again after a
// failed read.
func WithRetry(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.retry = d
		}
	}
}
