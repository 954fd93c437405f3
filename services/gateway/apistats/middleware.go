package apistats

import (
	"net/http"
	"time"

	"github.com/highgopress/highgopress/platform/telemetry"
)

// Middleware counts every call that passes through it by procedure (the
// URL path) and result code. The code is read from what the handler wrote,
// without decoding protobuf, by the platform's response classifier
// (telemetry.ResponseObserver, the one the RPC metrics use): the
// grpc-status header or trailer (gRPC, gRPC-Web trailers-only), the
// trailer frame of a gRPC-Web body, the end-of-stream frame of a Connect
// stream, the JSON error body of a Connect unary call (or, failing that,
// its HTTP status).
//
// Place it outside the rate limiter and authentication, so their rejections
// are counted too.
func (r *Recorder) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.opts.skip(req) {
			next.ServeHTTP(w, req)
			return
		}
		start := time.Now()
		obs := telemetry.NewResponseObserver(w, telemetry.ProtocolOf(req))
		next.ServeHTTP(obs, req)
		// The path as sent, as the gateway routes it: "Service%2FLike" is
		// not Like (it is answered unimplemented and counted as unknown).
		// The latency is the whole call's, a stream's lifetime included.
		r.RecordLatency(req.URL.EscapedPath(), obs.ConnectCode(), time.Since(start))
	})
}
