package gateway

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"net/http"
	"testing"

	"connectrpc.com/connect"
)

func gz(t testing.TB, n int) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, _ = zw.Write(bytes.Repeat([]byte{'x'}, n))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func frame(flags byte, payload []byte) []byte {
	out := []byte{flags, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(out[1:], uint32(len(payload)))
	return append(out, payload...)
}

func TestCheckCompressed(t *testing.T) {
	const limit = 1000
	req := func(kv ...string) *http.Request {
		r, _ := http.NewRequest(http.MethodPost, "/p.v1.S/M", nil)
		for i := 0; i+1 < len(kv); i += 2 {
			r.Header.Set(kv[i], kv[i+1])
		}
		return r
	}
	for _, tc := range []struct {
		name string
		r    *http.Request
		body []byte
		code connect.Code // 0: passes
	}{
		{"uncompressed connect", req("Content-Type", "application/json"), []byte("{}"), 0},
		{"connect gzip within", req("Content-Type", "application/proto", "Content-Encoding", "gzip"), gz(t, limit), 0},
		{"connect gzip over", req("Content-Type", "application/proto", "Content-Encoding", "GZIP"), gz(t, limit+1), connect.CodeResourceExhausted},
		{"connect not gzip", req("Content-Type", "application/proto", "Content-Encoding", "gzip"), []byte("nope"), connect.CodeInvalidArgument},
		{"connect other encoding", req("Content-Type", "application/proto", "Content-Encoding", "br"), []byte("nope"), 0},
		{"grpc frames within", req("Content-Type", "application/grpc", "Grpc-Encoding", "gzip"), append(frame(1, gz(t, limit)), frame(0, []byte("raw"))...), 0},
		{"grpc second frame over", req("Content-Type", "application/grpc+proto", "Grpc-Encoding", "gzip"), append(frame(1, gz(t, 10)), frame(1, gz(t, limit+1))...), connect.CodeResourceExhausted},
		{"grpc uncompressed flag", req("Content-Type", "application/grpc", "Grpc-Encoding", "gzip"), frame(0, bytes.Repeat([]byte{'x'}, 2*limit)), 0},
		{"grpc-web over", req("Content-Type", "application/grpc-web+proto", "Grpc-Encoding", "gzip"), frame(1, gz(t, 2*limit)), connect.CodeResourceExhausted},
		{"grpc corrupt", req("Content-Type", "application/grpc", "Grpc-Encoding", "gzip"), frame(1, []byte("junk")), connect.CodeInvalidArgument},
		{"grpc truncated framing", req("Content-Type", "application/grpc", "Grpc-Encoding", "gzip"), frame(1, gz(t, 2*limit))[:8], 0},
		{"grpc gzip but Content-Encoding header only", req("Content-Type", "application/grpc", "Content-Encoding", "gzip"), frame(1, gz(t, 2*limit)), 0},
		{"connect streaming over", req("Content-Type", "application/connect+proto", "Connect-Content-Encoding", "gzip"), frame(1, gz(t, 2*limit)), connect.CodeResourceExhausted},
		{"connect streaming end frame skipped", req("Content-Type", "application/connect+json", "Connect-Content-Encoding", "gzip"), frame(3, []byte("junk")), 0},
	} {
		code, msg, ok := checkCompressed(tc.r, tc.body, limit)
		if ok != (tc.code == 0) || code != tc.code {
			t.Errorf("%s: code %v ok %v (%q), want %v", tc.name, code, ok, msg, tc.code)
		}
	}
}

// FuzzCheckCompressed: no body or header panics the check.
func FuzzCheckCompressed(f *testing.F) {
	f.Add(uint8(0), gz(f, 10))
	f.Add(uint8(1), frame(1, gz(f, 3000)))
	f.Add(uint8(2), []byte{1, 255, 255, 255, 255, 0x1f, 0x8b})
	f.Add(uint8(3), frame(1, []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}))
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		r, _ := http.NewRequest(http.MethodPost, "/p.v1.S/M", nil)
		switch kind % 4 {
		case 0:
			r.Header.Set("Content-Encoding", "gzip")
		case 1:
			r.Header.Set("Content-Type", "application/grpc")
			r.Header.Set("Grpc-Encoding", "gzip")
		case 2:
			r.Header.Set("Content-Type", "application/grpc-web")
			r.Header.Set("Grpc-Encoding", "gzip")
		case 3:
			r.Header.Set("Content-Type", "application/connect+proto")
			r.Header.Set("Connect-Content-Encoding", "gzip")
		}
		code, _, ok := checkCompressed(r, body, 1024)
		if !ok && code != connect.CodeResourceExhausted && code != connect.CodeInvalidArgument {
			t.Fatalf("code %v", code)
		}
	})
}
