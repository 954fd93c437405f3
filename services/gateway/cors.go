package gateway

import (
	"net/http"
	"time"

	connectcors "connectrpc.com/cors"
	"github.com/rs/cors"
)

// corsMaxAge is how long browsers may cache a preflight answer.
const corsMaxAge = 2 * time.Hour

// withCORS lets browsers on the allowed origins call the gateway with
// Connect and gRPC-Web, exposing the Connect, gRPC and rate-limit headers.
// With no origins configured it returns h unchanged (same-origin only).
func withCORS(origins []string, h http.Handler) http.Handler {
	if len(origins) == 0 {
		return h
	}
	return cors.New(cors.Options{
		AllowedOrigins: origins,
		AllowedMethods: connectcors.AllowedMethods(),
		AllowedHeaders: append(connectcors.AllowedHeaders(), "Authorization"),
		ExposedHeaders: append(connectcors.ExposedHeaders(),
			"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After"),
		MaxAge: int(corsMaxAge.Seconds()),
	}).Handler(h)
}
