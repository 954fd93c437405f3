package gateway

import (
	"net/http"
	"slices"
	"strings"
	"time"

	connectcors "connectrpc.com/cors"
	"github.com/rs/cors"
)

// corsMaxAge is how long browsers may cache a preflight answer.
const corsMaxAge = 2 * time.Hour

// withCORS lets browsers on the allowed origins call the gateway with
// Connect and gRPC-Web, exposing the Connect, gRPC and rate-limit headers.
// With no origins configured it returns h unchanged (same-origin only).
// A preflight's Access-Control-Request-Headers is accepted in any order and
// letter case, with repeats and spaces (see normalizeRequestHeaders).
func withCORS(origins []string, h http.Handler) http.Handler {
	if len(origins) == 0 {
		return h
	}
	c := cors.New(cors.Options{
		AllowedOrigins: origins,
		AllowedMethods: connectcors.AllowedMethods(),
		AllowedHeaders: append(connectcors.AllowedHeaders(), "Authorization"),
		ExposedHeaders: append(connectcors.ExposedHeaders(),
			"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After"),
		MaxAge: int(corsMaxAge.Seconds()),
	}).Handler(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			if vs, ok := r.Header["Access-Control-Request-Headers"]; ok {
				if norm, ok := normalizeRequestHeaders(vs); ok {
					r.Header["Access-Control-Request-Headers"] = []string{norm}
				}
			}
		}
		c.ServeHTTP(w, r)
	})
}

// maxRequestedHeaders bounds the names of one preflight's
// Access-Control-Request-Headers the gateway normalises; a longer list is
// left as it is (and refused unless already in canonical form).
const maxRequestedHeaders = 64

// normalizeRequestHeaders turns a preflight's Access-Control-Request-Headers
// values into the one form rs/cors accepts: lower case, sorted, without
// repeats, comma-separated without spaces. Header names are
// case-insensitive and the Fetch standard leaves their order to the
// browser, so "Content-Type, Authorization" must be as good as
// "authorization,content-type". Empty elements are dropped.
func normalizeRequestHeaders(values []string) (string, bool) {
	var names []string
	for _, v := range values {
		for name := range strings.SplitSeq(v, ",") {
			name = strings.ToLower(strings.Trim(name, " \t"))
			if name == "" {
				continue
			}
			if len(names) == maxRequestedHeaders {
				return "", false
			}
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return strings.Join(slices.Compact(names), ","), true
}
