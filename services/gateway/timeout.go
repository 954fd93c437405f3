package gateway

import (
	"net/http"
	"time"
)

// clientTimeout returns the timeout the client asked for in Connect's
// Connect-Timeout-Ms or gRPC's Grpc-Timeout header. Malformed values are
// ignored here: the header still reaches the backend, which rejects it.
func clientTimeout(h http.Header) (time.Duration, bool) {
	var (
		d  time.Duration
		ok bool
	)
	if v := h.Get("Connect-Timeout-Ms"); v != "" {
		d, ok = parseConnectTimeout(v)
	}
	if v := h.Get("Grpc-Timeout"); v != "" {
		if g, gok := parseGRPCTimeout(v); gok && (!ok || g < d) {
			d, ok = g, true
		}
	}
	return d, ok
}

// parseConnectTimeout parses 1-10 decimal digits of milliseconds.
func parseConnectTimeout(v string) (time.Duration, bool) {
	if len(v) == 0 || len(v) > 10 {
		return 0, false
	}
	var ms int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		ms = ms*10 + int64(c-'0')
	}
	return time.Duration(ms) * time.Millisecond, true
}

// parseGRPCTimeout parses 1-8 decimal digits followed by a unit (H, M, S,
// m, u, n).
func parseGRPCTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	var n int64
	for i := 0; i < len(v)-1; i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	// 99999999 hours overflows time.Duration: saturate.
	if unit == time.Hour && n > int64(1<<63-1)/int64(time.Hour) {
		return 1<<63 - 1, true
	}
	return time.Duration(n) * unit, true
}
