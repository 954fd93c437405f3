package gateway

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"

	"connectrpc.com/connect"
)

// procedureOf is the path a request is routed on: the path exactly as the
// client sent it (still percent-encoded). A procedure name never needs
// escaping, so an encoded path ("CounterService%2FLike") matches no route
// and is answered Unimplemented by the gateway, instead of being routed on
// its decoded form while the backend receives (and 404s) the raw one.
func procedureOf(r *http.Request) string { return r.URL.EscapedPath() }

// checkConnectGET validates the query of a Connect unary GET before it is
// forwarded, the way connect-go's handler reads it (encoding and message
// required; base64=1 means URL-safe base64, padded or not), so bad input is
// InvalidArgument from the gateway instead of an "unknown" error from the
// backend. A message compressed with gzip (compression=gzip) is checked
// like a compressed body: it must not inflate past maxMsg.
func checkConnectGET(r *http.Request, maxMsg int64) (connect.Code, string, bool) {
	q := r.URL.Query()
	if !q.Has("encoding") {
		return connect.CodeInvalidArgument, "missing encoding parameter", false
	}
	if !q.Has("message") {
		return connect.CodeInvalidArgument, "missing message parameter", false
	}
	msg := []byte(q.Get("message"))
	if q.Get("base64") == "1" {
		enc := base64.URLEncoding
		if len(msg)%4 != 0 {
			enc = base64.RawURLEncoding
		}
		decoded := make([]byte, enc.DecodedLen(len(msg)))
		n, err := enc.Decode(decoded, msg)
		if err != nil {
			return connect.CodeInvalidArgument, fmt.Sprintf("message parameter is not valid URL-safe base64: %v", err), false
		}
		msg = decoded[:n]
	}
	if strings.EqualFold(strings.TrimSpace(q.Get("compression")), "gzip") && len(msg) > 0 {
		return verdict(inflatedWithin(msg, maxMsg), maxMsg)
	}
	return 0, "", true
}
