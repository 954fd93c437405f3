package telemetry

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzResponseObserver: no response body or chunking panics the envelope
// scanner or the code derivation, the code is always one of the 17, and
// the captures stay within their cap.
func FuzzResponseObserver(f *testing.F) {
	f.Add("application/grpc-web", []byte{0x80, 0, 0, 0, 3, 'a', ':', 'b'}, uint8(2), 200)
	f.Add("application/grpc-web", []byte{0x80, 0, 0, 0, 14, 'g', 'r', 'p', 'c', '-', 's', 't', 'a', 't', 'u', 's', ':', ' ', '8'}, uint8(3), 200)
	f.Add("application/connect+json", []byte{0x02, 0xff, 0xff, 0xff, 0xff}, uint8(1), 200)
	f.Add("application/connect+json", []byte{0x03, 0, 0, 0, 2, 0x1f, 0x8b}, uint8(1), 200)
	f.Add("application/json", []byte(`{"code":`), uint8(5), 400)
	f.Add("application/json", []byte(`{"code":"not_found"}`), uint8(5), 404)
	f.Add("application/grpc", []byte{}, uint8(0), 200)
	f.Fuzz(func(t *testing.T, ctype string, body []byte, chunk uint8, status int) {
		if status < 100 || status > 999 {
			status = 200
		}
		step := int(chunk) + 1
		rec := httptest.NewRecorder()
		rec.Header().Set("Connect-Content-Encoding", "gzip")
		w := NewResponseObserver(rec, ProtocolOf(&http.Request{Header: http.Header{"Content-Type": {ctype}}}))
		w.WriteHeader(status)
		for b := body; len(b) > 0; {
			n := min(step, len(b))
			_, _ = w.Write(b[:n])
			b = b[n:]
		}
		if c := w.ConnectCode(); c > 16 {
			t.Fatalf("code %d out of range", c)
		}
		if (w.Code() == "ok") != (w.ConnectCode() == 0) {
			t.Fatalf("Code %q and ConnectCode %d disagree", w.Code(), w.ConnectCode())
		}
		if len(w.endFrame) > maxCapture || len(w.body) > maxCapture {
			t.Fatal("capture exceeded its cap")
		}
	})
}

// TestObserverReadsGRPCWebTextTrailers: a grpc-web-text response (each
// frame base64-encoded on its own, written in odd chunks) yields the code
// of its trailer frame, as binary gRPC-Web does.
func TestObserverReadsGRPCWebTextTrailers(t *testing.T) {
	frame := func(flag byte, payload string) []byte {
		b := []byte{flag, 0, 0, 0, byte(len(payload))}
		return append(b, payload...)
	}
	for _, tc := range []struct {
		trailer, want string
	}{
		{"grpc-status: 5\r\ngrpc-message: no\r\n", "not_found"},
		{"grpc-status: 0\r\n", "ok"},
	} {
		body := base64.StdEncoding.EncodeToString(frame(0, "hello")) + base64.StdEncoding.EncodeToString(frame(0x80, tc.trailer))
		for _, step := range []int{1, 3, 7, len(body)} {
			rec := httptest.NewRecorder()
			rec.Header().Set("Content-Type", "application/grpc-web-text+proto")
			w := NewResponseObserver(rec, ProtocolOf(&http.Request{Header: http.Header{"Content-Type": {"application/grpc-web-text"}}}))
			for b := body; len(b) > 0; {
				n := min(step, len(b))
				_, _ = w.Write([]byte(b[:n]))
				b = b[n:]
			}
			if got := w.Code(); got != tc.want {
				t.Errorf("chunks of %d: code %q, want %q", step, got, tc.want)
			}
			if rec.Body.String() != body {
				t.Fatalf("the body was changed on its way through")
			}
		}
	}
}
