package apistats

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
)

// Middleware counts every call that passes through it by procedure (the
// URL path) and result code. The code is read from what the handler wrote,
// without decoding protobuf: the grpc-status header or trailer (gRPC,
// gRPC-Web trailers-only), the trailer frame of a gRPC-Web body, the
// end-of-stream frame of a Connect stream, the JSON error body of a Connect
// unary call (or, failing that, its HTTP status).
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
		sw := &statusWriter{ResponseWriter: w, proto: protocolOf(req)}
		next.ServeHTTP(sw, req)
		// The path as sent, as the gateway routes it: "Service%2FLike" is
		// not Like (it is answered unimplemented and counted as unknown).
		// The latency is the whole call's, a stream's lifetime included.
		r.RecordLatency(req.URL.EscapedPath(), sw.code(), time.Since(start))
	})
}

type protocol int

const (
	protoConnectUnary protocol = iota
	protoConnectStream
	protoGRPC
	protoGRPCWeb
)

func protocolOf(r *http.Request) protocol {
	ct := r.Header.Get("Content-Type")
	switch {
	case strings.HasPrefix(ct, "application/grpc-web"):
		return protoGRPCWeb
	case strings.HasPrefix(ct, "application/grpc"):
		return protoGRPC
	case strings.HasPrefix(ct, "application/connect+"):
		return protoConnectStream
	}
	return protoConnectUnary
}

// maxCapture bounds what is kept of an error body or a trailer frame.
const maxCapture = 4 << 10

// statusWriter observes a response: status, headers, and for gRPC-Web and
// Connect streams the envelope framing, capturing only the final frame.
type statusWriter struct {
	http.ResponseWriter
	proto       protocol
	status      int
	wroteHeader bool

	// Connect unary error body (status != 200), capped.
	body []byte

	// Envelope parser state for gRPC-Web / Connect streams.
	hdr           [5]byte
	hdrN          int
	remain        uint32 // bytes left in the current frame's payload
	final         bool   // the current frame is the trailer / end-of-stream frame
	endFrame      []byte
	sawEnd        bool
	endCompressed bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.status = code
		w.wroteHeader = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.status = http.StatusOK
		w.wroteHeader = true
	}
	switch w.proto {
	case protoConnectUnary:
		if w.status != http.StatusOK && len(w.body) < maxCapture {
			w.body = append(w.body, p[:min(len(p), maxCapture-len(w.body))]...)
		}
	case protoGRPCWeb, protoConnectStream:
		w.scan(p)
	}
	return w.ResponseWriter.Write(p)
}

// scan follows the 5-byte-prefixed envelopes and keeps the payload of the
// final frame (flag 0x80 for gRPC-Web trailers, 0x02 for Connect
// end-of-stream).
func (w *statusWriter) scan(p []byte) {
	endFlag := byte(0x80)
	if w.proto == protoConnectStream {
		endFlag = 0x02
	}
	for len(p) > 0 {
		if w.remain == 0 && w.hdrN < 5 {
			n := copy(w.hdr[w.hdrN:], p)
			w.hdrN += n
			p = p[n:]
			if w.hdrN < 5 {
				return
			}
			w.remain = binary.BigEndian.Uint32(w.hdr[1:])
			w.final = w.hdr[0]&endFlag != 0
			if w.final {
				w.sawEnd = true
				w.endCompressed = w.hdr[0]&0x01 != 0
				w.endFrame = w.endFrame[:0]
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
		p = p[n:]
		w.remain -= n
		if w.remain == 0 {
			w.hdrN = 0
		}
	}
}

// Flush lets streaming responses through.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		if !w.wroteHeader {
			w.status = http.StatusOK
			w.wroteHeader = true
		}
		f.Flush()
	}
}

// Unwrap exposes the underlying writer to http.ResponseController.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// code derives the call's result after the handler returned.
func (w *statusWriter) code() connect.Code {
	status := w.status
	if !w.wroteHeader {
		status = http.StatusOK // nothing written: net/http sends 200 with no body
	}
	h := w.Header()
	switch w.proto {
	case protoGRPC:
		if c, ok := grpcStatus(h); ok {
			return c
		}
		if status != http.StatusOK {
			return httpToCode(status)
		}
		return connect.CodeUnknown // a gRPC response must end with grpc-status
	case protoGRPCWeb:
		if c, ok := grpcStatus(h); ok { // trailers-only response
			return c
		}
		if status != http.StatusOK {
			return httpToCode(status)
		}
		if frame, ok := w.endPayload(h.Get("Grpc-Encoding")); ok {
			if c, ok := grpcWebTrailerStatus(frame); ok {
				return c
			}
		}
		return connect.CodeUnknown
	case protoConnectStream:
		if status != http.StatusOK {
			return httpToCode(status)
		}
		frame, ok := w.endPayload(h.Get("Connect-Content-Encoding"))
		if !ok {
			return connect.CodeUnknown
		}
		var end struct {
			Error *struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if err := json.Unmarshal(frame, &end); err != nil {
			return connect.CodeUnknown
		}
		if end.Error == nil {
			return OK
		}
		return parseCode(end.Error.Code)
	default: // Connect unary (POST or GET)
		if status == http.StatusOK {
			return OK
		}
		var e struct {
			Code string `json:"code"`
		}
		if len(w.body) > 0 && json.Unmarshal(w.body, &e) == nil && e.Code != "" {
			return parseCode(e.Code)
		}
		return httpToCode(status)
	}
}

// endPayload returns the final frame's payload, gunzipped (at most
// maxCapture bytes) when the frame is compressed with gzip; other encodings
// are not read.
func (w *statusWriter) endPayload(encoding string) ([]byte, bool) {
	if !w.sawEnd {
		return nil, false
	}
	if !w.endCompressed {
		return w.endFrame, true
	}
	if !strings.EqualFold(strings.TrimSpace(encoding), "gzip") {
		return nil, false
	}
	zr, err := gzip.NewReader(bytes.NewReader(w.endFrame))
	if err != nil {
		return nil, false
	}
	out, err := io.ReadAll(io.LimitReader(zr, maxCapture))
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, false
	}
	return out, true
}

// grpcStatus reads grpc-status from headers or trailers (declared, or set
// with http.TrailerPrefix).
func grpcStatus(h http.Header) (connect.Code, bool) {
	v := h.Get("Grpc-Status")
	if v == "" {
		v = h.Get(http.TrailerPrefix + "Grpc-Status")
	}
	if v == "" {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 || n >= numCodes {
		return connect.CodeUnknown, true
	}
	return connect.Code(n), true
}

// grpcWebTrailerStatus parses "grpc-status: N" from an HTTP/1-style
// trailer block.
func grpcWebTrailerStatus(block []byte) (connect.Code, bool) {
	for line := range bytes.SplitSeq(block, []byte("\n")) {
		k, v, ok := bytes.Cut(bytes.TrimRight(line, "\r"), []byte(":"))
		if !ok || !strings.EqualFold(string(bytes.TrimSpace(k)), "grpc-status") {
			continue
		}
		n, err := strconv.Atoi(string(bytes.TrimSpace(v)))
		if err != nil || n < 0 || n >= numCodes {
			return connect.CodeUnknown, true
		}
		return connect.Code(n), true
	}
	return 0, false
}

func parseCode(s string) connect.Code {
	var c connect.Code
	if err := c.UnmarshalText([]byte(s)); err != nil {
		return connect.CodeUnknown
	}
	return c
}

// httpToCode is the gRPC HTTP-to-code mapping, used when a response carries
// no code of its own.
func httpToCode(status int) connect.Code {
	switch status {
	case http.StatusOK:
		return OK
	case 400:
		return connect.CodeInternal
	case 401:
		return connect.CodeUnauthenticated
	case 403:
		return connect.CodePermissionDenied
	case 404:
		return connect.CodeUnimplemented
	case 429, 502, 503, 504:
		return connect.CodeUnavailable
	}
	return connect.CodeUnknown
}
