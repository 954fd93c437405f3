// Package rpcerror writes the gateway's own errors in the protocol of the
// request, with an HTTP status of the gateway's choosing where the protocol
// allows one.
package rpcerror

import (
	"encoding/json"
	"net/http"
	"strings"

	"connectrpc.com/connect"
)

// IsRPCFramed reports whether r uses a protocol whose errors travel in its
// own framing with HTTP 200: gRPC, gRPC-Web (binary and text) and Connect
// streaming. Everything else (Connect unary, Connect GET, a browser, curl
// without a content type) gets a Connect JSON error body with a
// meaningful HTTP status.
func IsRPCFramed(r *http.Request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	ct := r.Header.Get("Content-Type")
	return strings.HasPrefix(ct, "application/grpc") || strings.HasPrefix(ct, "application/connect+")
}

// Write answers r with a Connect error of code and msg. For a request that
// IsRPCFramed, errw writes it in the request's protocol (HTTP 200, status
// in headers, trailers or end-stream message). Otherwise the answer is a
// Connect JSON error with HTTP status, or the status connect-go derives
// from code when status is 0.
func Write(w http.ResponseWriter, r *http.Request, errw *connect.ErrorWriter, code connect.Code, msg string, status int) error {
	if status == 0 || IsRPCFramed(r) {
		return errw.Write(w, r, connect.NewError(code, errString(msg)))
	}
	body, err := json.Marshal(struct {
		Code    string `json:"code"`
		Message string `json:"message,omitempty"`
	}{code.String(), msg})
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err = w.Write(body)
	return err
}

type errString string

func (e errString) Error() string { return string(e) }
