package telemetry

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"connectrpc.com/connect"
)

// Protocol is the RPC protocol of a request, from its Content-Type.
type Protocol uint8

// The protocols every service serves from one handler.
const (
	ProtocolConnect       Protocol = iota // Connect unary (POST or GET)
	ProtocolConnectStream                 // Connect streaming
	ProtocolGRPC
	ProtocolGRPCWeb
	numProtocols
)

// Label is the protocol's metric label value (Connect streams count as
// connect).
func (p Protocol) Label() string {
	switch p {
	case ProtocolGRPC:
		return "grpc"
	case ProtocolGRPCWeb:
		return "grpc_web"
	default:
		return "connect"
	}
}

// ProtocolOf classifies a request by its Content-Type.
func ProtocolOf(r *http.Request) Protocol {
	ct := r.Header.Get("Content-Type")
	switch {
	case strings.HasPrefix(ct, "application/grpc-web"):
		return ProtocolGRPCWeb
	case strings.HasPrefix(ct, "application/grpc"):
		return ProtocolGRPC
	case strings.HasPrefix(ct, "application/connect+"):
		return ProtocolConnectStream
	}
	return ProtocolConnect
}

// maxCapture bounds what is kept of an error body or an end-of-stream frame.
const maxCapture = 4 << 10

// ResponseObserver is an http.ResponseWriter that learns the Connect code a
// handler answered with, without decoding protobuf: the grpc-status header
// or trailer (gRPC, gRPC-Web trailers-only), the trailer frame of a
// gRPC-Web body, the end-of-stream frame of a Connect stream, the JSON
// error body of a Connect unary call (or, failing that, its HTTP status).
// Only an error body or the final frame is kept, at most 4 KiB.
type ResponseObserver struct {
	http.ResponseWriter
	proto       Protocol
	status      int
	wroteHeader bool

	body []byte // Connect unary error body (status != 200), capped

	// envelope parser state (gRPC-Web, Connect streams)
	hdr       [5]byte
	hdrN      int
	remain    uint32
	final     bool
	endFrame  []byte
	sawEnd    bool
	endGzip   bool
	endFlag   byte
	scanFrame bool

	// grpc-web-text: the envelopes are base64 (in 4-character quanta, each
	// write's text padded on its own); text holds an incomplete quantum.
	isText bool
	text   [4]byte
	textN  int
}

// NewResponseObserver wraps w for a request of protocol p.
func NewResponseObserver(w http.ResponseWriter, p Protocol) *ResponseObserver {
	o := &ResponseObserver{ResponseWriter: w, proto: p}
	switch p {
	case ProtocolGRPCWeb:
		o.endFlag, o.scanFrame = 0x80, true
	case ProtocolConnectStream:
		o.endFlag, o.scanFrame = 0x02, true
	}
	return o
}

// WriteHeader records the status.
func (w *ResponseObserver) WriteHeader(code int) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = code, true
		w.checkText()
	}
	w.ResponseWriter.WriteHeader(code)
}

// checkText notes, when the response starts and before a writer inside
// it sees the headers, whether the body is grpc-web-text. (A writer inside
// that translates binary gRPC-Web to text rewrites the shared headers when
// its own WriteHeader runs: an observer inside it still sees binary.)
func (w *ResponseObserver) checkText() {
	w.isText = w.scanFrame && strings.HasPrefix(w.Header().Get("Content-Type"), "application/grpc-web-text")
}

// Write records what the code needs and passes p on.
func (w *ResponseObserver) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = http.StatusOK, true
		w.checkText()
	}
	if w.scanFrame {
		if w.isText {
			w.scanText(p)
		} else {
			w.scan(p)
		}
	} else if w.proto == ProtocolConnect && w.status != http.StatusOK && len(w.body) < maxCapture {
		w.body = append(w.body, p[:min(len(p), maxCapture-len(w.body))]...)
	}
	return w.ResponseWriter.Write(p)
}

// Flush lets streaming responses through.
func (w *ResponseObserver) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		if !w.wroteHeader {
			w.status, w.wroteHeader = http.StatusOK, true
			w.checkText()
		}
		f.Flush()
	}
}

// Unwrap exposes the underlying writer to http.ResponseController.
func (w *ResponseObserver) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// scanText decodes grpc-web-text base64 quantum by quantum (padding may
// end any quantum: every message is encoded on its own) and scans the
// bytes. Characters outside the base64 alphabet are skipped.
func (w *ResponseObserver) scanText(p []byte) {
	var out [3]byte
	for _, c := range p {
		if !isBase64(c) {
			continue
		}
		w.text[w.textN] = c
		w.textN++
		if w.textN < 4 {
			continue
		}
		w.textN = 0
		n, err := base64.StdEncoding.Decode(out[:], w.text[:])
		if err != nil {
			continue
		}
		w.scan(out[:n])
	}
}

func isBase64(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '='
}

// scan follows the 5-byte-prefixed envelopes, keeping the final frame.
func (w *ResponseObserver) scan(p []byte) {
	for len(p) > 0 {
		if w.remain == 0 && w.hdrN < 5 {
			n := copy(w.hdr[w.hdrN:], p)
			w.hdrN += n
			p = p[n:]
			if w.hdrN < 5 {
				return
			}
			w.remain = binary.BigEndian.Uint32(w.hdr[1:])
			w.final = w.hdr[0]&w.endFlag != 0
			if w.final {
				w.sawEnd, w.endGzip, w.endFrame = true, w.hdr[0]&0x01 != 0, w.endFrame[:0]
			}
			if w.remain == 0 {
				w.hdrN = 0
			}
			continue
		}
		n := min(uint32(len(p)), w.remain)
		if w.final && len(w.endFrame) < maxCapture {
			w.endFrame = append(w.endFrame, p[:min(int(n), maxCapture-len(w.endFrame))]...)
		}
		p, w.remain = p[n:], w.remain-n
		if w.remain == 0 {
			w.hdrN = 0
		}
	}
}

// Code is the call's result once the handler returned: "ok" or a Connect
// code name (connect.Code.String).
func (w *ResponseObserver) Code() string {
	c, ok := w.code()
	if ok {
		return "ok"
	}
	return c.String()
}

// ConnectCode is the call's result once the handler returned: 0 for
// success (Connect has no code 0), else the Connect code (1..16).
func (w *ResponseObserver) ConnectCode() connect.Code {
	c, ok := w.code()
	if ok {
		return 0
	}
	return c
}

// code returns the error code, or ok=true for success.
func (w *ResponseObserver) code() (connect.Code, bool) {
	status := http.StatusOK
	if w.wroteHeader {
		status = w.status
	}
	h := w.Header()
	switch w.proto {
	case ProtocolGRPC, ProtocolGRPCWeb:
		if s, ok := grpcStatus(h.Get("Grpc-Status"), h.Get(http.TrailerPrefix+"Grpc-Status")); ok {
			return s, s == 0
		}
		if status != http.StatusOK {
			return httpCode(status), false
		}
		if w.proto == ProtocolGRPCWeb {
			if frame, ok := w.endPayload(h.Get("Grpc-Encoding")); ok {
				if s, ok := grpcWebTrailerStatus(frame); ok {
					return s, s == 0
				}
			}
		}
		return connect.CodeUnknown, false // a gRPC response must end with grpc-status
	case ProtocolConnectStream:
		if status != http.StatusOK {
			return httpCode(status), false
		}
		frame, ok := w.endPayload(h.Get("Connect-Content-Encoding"))
		if !ok {
			return connect.CodeUnknown, false
		}
		var end struct {
			Error *struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if json.Unmarshal(frame, &end) != nil {
			return connect.CodeUnknown, false
		}
		if end.Error == nil {
			return 0, true
		}
		return codeNamed(end.Error.Code), false
	default:
		if status == http.StatusOK {
			return 0, true
		}
		var e struct {
			Code string `json:"code"`
		}
		if json.Unmarshal(w.body, &e) == nil && e.Code != "" {
			return codeNamed(e.Code), false
		}
		return httpCode(status), false
	}
}

func (w *ResponseObserver) endPayload(encoding string) ([]byte, bool) {
	if !w.sawEnd {
		return nil, false
	}
	if !w.endGzip {
		return w.endFrame, true
	}
	if !strings.EqualFold(strings.TrimSpace(encoding), "gzip") {
		return nil, false
	}
	zr, err := gzip.NewReader(bytes.NewReader(w.endFrame))
	if err != nil {
		return nil, false
	}
	// The frame may have been cut at maxCapture: what decompresses is kept.
	out, err := io.ReadAll(io.LimitReader(zr, maxCapture))
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, false
	}
	return out, true
}

func grpcStatus(vs ...string) (connect.Code, bool) {
	for _, v := range vs {
		if v == "" {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
		if err != nil || n > 16 {
			return connect.CodeUnknown, true
		}
		return connect.Code(n), true
	}
	return 0, false
}

func grpcWebTrailerStatus(frame []byte) (connect.Code, bool) {
	for _, line := range strings.Split(string(frame), "\n") {
		k, v, ok := strings.Cut(strings.TrimRight(line, "\r"), ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), "grpc-status") {
			return grpcStatus(v)
		}
	}
	return 0, false
}

func codeNamed(name string) connect.Code {
	var c connect.Code
	if c.UnmarshalText([]byte(name)) != nil || c == 0 {
		return connect.CodeUnknown
	}
	return c
}

// httpCode maps an HTTP status to a code as Connect clients do.
func httpCode(status int) connect.Code {
	switch status {
	case http.StatusBadRequest:
		return connect.CodeInternal
	case http.StatusUnauthorized:
		return connect.CodeUnauthenticated
	case http.StatusForbidden:
		return connect.CodePermissionDenied
	case http.StatusNotFound:
		return connect.CodeUnimplemented
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return connect.CodeUnavailable
	case http.StatusRequestEntityTooLarge:
		return connect.CodeResourceExhausted
	}
	return connect.CodeUnknown
}
