package ratelimit

import (
	"net/http"
	"strings"
	"time"
)

// Option configures a Limiter.
type Option func(*options)

type options struct {
	subject  func(*http.Request) string
	classify func(*http.Request) Class
	skip     func(*http.Request) bool
	prefix   string
	probe    time.Duration
	now      func() time.Time
}

func defaultOptions() options {
	return options{
		classify: ClassifyByMethodName,
		skip:     SkipHealthAndReflection,
		prefix:   "hgp:rl",
		probe:    time.Second,
		now:      time.Now,
	}
}

// WithSubject gives the limiter the authenticated user of a request ("" for
// anonymous). It must return only a verified subject (never an unverified
// token's claim, or an attacker could spend someone else's budget).
func WithSubject(f func(*http.Request) string) Option {
	return func(o *options) { o.subject = f }
}

// WithClassify decides whether a request is a Read or a Write (default
// ClassifyByMethodName).
func WithClassify(f func(*http.Request) Class) Option {
	return func(o *options) {
		if f != nil {
			o.classify = f
		}
	}
}

// WithSkip exempts requests from limiting (default SkipHealthAndReflection).
func WithSkip(f func(*http.Request) bool) Option {
	return func(o *options) {
		if f != nil {
			o.skip = f
		}
	}
}

// WithKeyPrefix sets the Redis key prefix (default "hgp:rl").
func WithKeyPrefix(p string) Option {
	return func(o *options) {
		if p != "" {
			o.prefix = p
		}
	}
}

// WithProbeInterval sets how often Redis is retried while it is down
// (default 1s); between probes requests go straight to the fallback.
func WithProbeInterval(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.probe = d
		}
	}
}

// ClassifyByMethodName treats Connect GET requests and methods named
// Get*/List*/Watch*/Stream*/Top*/Search* as reads, everything else as
// writes.
func ClassifyByMethodName(r *http.Request) Class {
	if r.Method == http.MethodGet {
		return Read
	}
	method := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	for _, p := range []string{"Get", "List", "Watch", "Stream", "Top", "Search"} {
		if strings.HasPrefix(method, p) {
			return Read
		}
	}
	return Write
}

// SkipHealthAndReflection exempts gRPC health checks and server reflection.
func SkipHealthAndReflection(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, "/grpc.health.v1.") || strings.HasPrefix(r.URL.Path, "/grpc.reflection.")
}
