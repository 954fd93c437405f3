// Package tracecontext carries a W3C trace context (the traceparent header,
// https://www.w3.org/TR/trace-context/) from an incoming request to what
// the request causes later: the counter stores it with each outbox entry
// and the relay puts it on the Kafka message, so a consumer's log line can
// be joined with the request that caused it.
package tracecontext

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"

	"connectrpc.com/connect"
)

// Header is the HTTP (and Kafka) header name.
const Header = "traceparent"

// Valid reports whether h is a traceparent this package accepts: version
// 00 ("00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>", lower case,
// ids not all zero), or a later version with at least those fields (only
// the first four are kept by Normalize).
func Valid(h string) bool {
	_, ok := Normalize(h)
	return ok
}

// Normalize returns the version-00 form of h, or false when h is not a
// valid traceparent.
func Normalize(h string) (string, bool) {
	parts := strings.Split(strings.TrimSpace(h), "-")
	if len(parts) < 4 {
		return "", false
	}
	version, trace, parent, flags := parts[0], parts[1], parts[2], parts[3]
	if !lowerHex(version, 2) || version == "ff" || (version == "00" && len(parts) != 4) {
		return "", false
	}
	if !lowerHex(trace, 32) || !lowerHex(parent, 16) || !lowerHex(flags, 2) {
		return "", false
	}
	if strings.Trim(trace, "0") == "" || strings.Trim(parent, "0") == "" {
		return "", false
	}
	return "00-" + trace + "-" + parent + "-" + flags, true
}

func lowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < n; i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// New returns a fresh traceparent (random trace and parent ids, not
// sampled), for requests that arrive without one.
func New() string {
	var b [24]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[0] |= 1              // never all zero
	b[16] |= 1
	return "00-" + hex.EncodeToString(b[:16]) + "-" + hex.EncodeToString(b[16:]) + "-00"
}

type ctxKey struct{}

// With returns ctx carrying traceparent tp.
func With(ctx context.Context, tp string) context.Context {
	return context.WithValue(ctx, ctxKey{}, tp)
}

// From returns the traceparent ctx carries, or "".
func From(ctx context.Context) string {
	tp, _ := ctx.Value(ctxKey{}).(string)
	return tp
}

// FromHeader returns the normalized traceparent of an incoming header
// value, or a new one when it is missing or invalid.
func FromHeader(h string) string {
	if tp, ok := Normalize(h); ok {
		return tp
	}
	return New()
}

// NewInterceptor returns a Connect interceptor for handlers: every request
// runs with the traceparent it arrived with (normalized), or a new one.
func NewInterceptor() connect.Interceptor {
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if req.Spec().IsClient {
				return next(ctx, req)
			}
			return next(With(ctx, FromHeader(req.Header().Get(Header))), req)
		}
	})
}
