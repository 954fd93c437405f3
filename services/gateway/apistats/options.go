package apistats

import (
	"net/http"
	"strings"
	"time"
)

// Option configures a Recorder.
type Option func(*options)

type options struct {
	interval      time.Duration
	closeTimeout  time.Duration
	maxProcedures int
	maxPending    int
	instance      string
	known         func(procedure string) bool
	skip          func(*http.Request) bool
	now           func() time.Time
}

func defaultOptions() options {
	return options{
		closeTimeout:  5 * time.Second,
		maxProcedures: 512,
		maxPending:    100_000,
		skip:          SkipHealthAndReflection,
		now:           time.Now,
	}
}

// WithKnownProcedures counts calls to procedures for which known returns
// false (unrouted paths, scanners) under UnknownProcedure, so clients cannot
// grow the table with random paths.
func WithKnownProcedures(known func(procedure string) bool) Option {
	return func(o *options) { o.known = known }
}

// WithMaxProcedures caps the distinct procedures counted by name (default
// 512); further ones are counted under OtherProcedure.
func WithMaxProcedures(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxProcedures = n
		}
	}
}

// WithMaxPending caps the stats kept for retry while the sink fails
// (default 100000); the oldest are dropped (and counted) past it.
func WithMaxPending(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxPending = n
		}
	}
}

// WithInstance names this recorder in stat IDs (default host-pid-start).
func WithInstance(id string) Option { return func(o *options) { o.instance = id } }

// WithCloseTimeout bounds the final flush (default 5s).
func WithCloseTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.closeTimeout = d
		}
	}
}

// WithSkip exempts requests from counting (default SkipHealthAndReflection).
func WithSkip(f func(*http.Request) bool) Option {
	return func(o *options) {
		if f != nil {
			o.skip = f
		}
	}
}

// SkipHealthAndReflection exempts gRPC health checks, server reflection and
// CORS preflight requests.
func SkipHealthAndReflection(r *http.Request) bool {
	return r.Method == http.MethodOptions ||
		strings.HasPrefix(r.URL.Path, "/grpc.health.v1.") || strings.HasPrefix(r.URL.Path, "/grpc.reflection.")
}
