package counter_test

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/platform/identity"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/services/counter"
)

// bombSize is what the compression bomb inflates to.
const bombSize = 64 << 20

// gzipBomb returns bombSize zero bytes, gzip-compressed (about 64 KB).
func gzipBomb(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for range bombSize / len(zeros) {
		if _, err := zw.Write(zeros); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// envelope frames payload for gRPC and gRPC-Web with the compressed flag.
func envelope(payload []byte) []byte {
	out := make([]byte, 5, 5+len(payload))
	out[0] = 1 // compressed
	binary.BigEndian.PutUint32(out[1:], uint32(len(payload)))
	return append(out, payload...)
}

// rpcStatus is the outcome of a raw request.
type rpcStatus struct {
	code connect.Code
	msg  string
}

// connectStatus reads a Connect unary error body.
func connectStatus(t *testing.T, res *http.Response) rpcStatus {
	t.Helper()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	var e struct{ Code, Message string }
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("HTTP %d, body %q: %v", res.StatusCode, body, err)
	}
	var code connect.Code
	if err := code.UnmarshalText([]byte(e.Code)); err != nil {
		t.Fatalf("HTTP %d, body %q: %v", res.StatusCode, body, err)
	}
	return rpcStatus{code, e.Message}
}

// grpcStatus reads grpc-status and grpc-message from the trailers (gRPC),
// a trailers-only response's headers, or the trailer frame of a gRPC-Web
// body.
func grpcStatus(t *testing.T, res *http.Response) rpcStatus {
	t.Helper()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	for _, src := range []http.Header{res.Header, res.Trailer} {
		for k, v := range src {
			h[k] = v
		}
	}
	for rest := body; len(rest) >= 5; { // gRPC-Web: trailers in a frame flagged 0x80
		flags, n := rest[0], binary.BigEndian.Uint32(rest[1:5])
		if int(n) > len(rest)-5 {
			t.Fatalf("truncated gRPC-Web frame in %q", body)
		}
		frame := rest[5 : 5+n]
		rest = rest[5+n:]
		if flags&0x80 == 0 {
			continue
		}
		for line := range strings.SplitSeq(strings.TrimSpace(string(frame)), "\r\n") {
			if k, v, ok := strings.Cut(line, ":"); ok {
				h.Set(strings.TrimSpace(k), strings.TrimSpace(v))
			}
		}
	}
	n, err := strconv.Atoi(h.Get("Grpc-Status"))
	if err != nil {
		t.Fatalf("HTTP %d without grpc-status (headers %v, body %q)", res.StatusCode, h, body)
	}
	msg, err := url.PathUnescape(h.Get("Grpc-Message"))
	if err != nil {
		t.Fatal(err)
	}
	return rpcStatus{connect.Code(n), msg}
}

// TestCompressionBombs: a gzip body of 64 KB that inflates to 64 MiB, sent
// raw over every protocol, is refused with ResourceExhausted after at most
// HGP_MAX_MESSAGE_BYTES+1 bytes were inflated (connect-go alone would
// inflate all 64 MiB to report the size), and nothing is written.
func TestCompressionBombs(t *testing.T) {
	e := newEnv(t)
	bomb := gzipBomb(t)
	t.Logf("bomb: %d bytes compressed, %d MiB inflated", len(bomb), bombSize>>20)
	const limit = counter.DefaultMaxMessageBytes
	actor := e.signer.Sign("u1", "/highgopress.counter.v1.CounterService/Like")
	like := e.url + "/highgopress.counter.v1.CounterService/Like"

	cases := []struct {
		name string
		req  func() *http.Request
		read func(*testing.T, *http.Response) rpcStatus
	}{
		{"connect-json", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, like, bytes.NewReader(bomb))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Content-Encoding", "gzip")
			r.Header.Set("Connect-Protocol-Version", "1")
			r.Header.Set(identity.Header, actor)
			return r
		}, connectStatus},
		{"connect-proto", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, like, bytes.NewReader(bomb))
			r.Header.Set("Content-Type", "application/proto")
			r.Header.Set("Content-Encoding", "gzip")
			r.Header.Set("Connect-Protocol-Version", "1")
			r.Header.Set(identity.Header, actor)
			return r
		}, connectStatus},
		{"connect-get", func() *http.Request {
			q := url.Values{
				"connect":     {"v1"},
				"encoding":    {"json"},
				"compression": {"gzip"},
				"base64":      {"1"},
				"message":     {base64.RawURLEncoding.EncodeToString(bomb)},
			}
			r, _ := http.NewRequest(http.MethodGet, e.url+"/highgopress.counter.v1.CounterService/GetCounts?"+q.Encode(), nil)
			return r
		}, connectStatus},
		{"grpc", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, like, bytes.NewReader(envelope(bomb)))
			r.Header.Set("Content-Type", "application/grpc")
			r.Header.Set("Grpc-Encoding", "gzip")
			r.Header.Set("Te", "trailers")
			r.Header.Set(identity.Header, actor)
			return r
		}, grpcStatus},
		{"grpc-web", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, like, bytes.NewReader(envelope(bomb)))
			r.Header.Set("Content-Type", "application/grpc-web+proto")
			r.Header.Set("Grpc-Encoding", "gzip")
			r.Header.Set("X-Grpc-Web", "1")
			r.Header.Set(identity.Header, actor)
			return r
		}, grpcStatus},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.c.InflatedBytes()
			res, err := e.http.Do(c.req())
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			st := c.read(t, res)
			inflated := e.c.InflatedBytes() - before
			t.Logf("%s: %v %q after inflating %d bytes", c.name, st.code, st.msg, inflated)
			if st.code != connect.CodeResourceExhausted || !strings.Contains(st.msg, "larger than configured max") {
				t.Fatalf("bomb answered %v %q; want ResourceExhausted, message too large", st.code, st.msg)
			}
			if inflated > limit+1 {
				t.Fatalf("the bomb was inflated by %d bytes; want at most %d (the limit + 1)", inflated, limit+1)
			}
			if inflated == 0 {
				t.Fatal("nothing was inflated: the request never reached the decompressor")
			}
		})
	}
	if k := e.keys(t); len(k) != 0 {
		t.Fatalf("bombs created keys %v", k)
	}

	// Ordinary gzip-compressed requests still work on every protocol, and a
	// message just over the limit is refused the same way.
	for _, p := range rpctest.Protocols {
		cs := e.counters(p, connect.WithSendGzip())
		res, err := cs.Like(bg, as(e, "u-"+p.Name, &counterv1.LikeRequest{Item: ref("articles", "gz")}))
		if err != nil || !res.Msg.Changed {
			t.Fatalf("%s: gzip-compressed Like = %v, %v", p.Name, res, err)
		}
		before := e.c.InflatedBytes()
		_, err = cs.Like(bg, as(e, "u1", &counterv1.LikeRequest{Item: ref("articles", strings.Repeat("x", limit))}))
		wantCode(t, p.Name+": compressed message over the limit", err, connect.CodeResourceExhausted, "larger than configured max")
		if inflated := e.c.InflatedBytes() - before; inflated > limit+1 {
			t.Fatalf("%s: inflated %d bytes of a message over the limit; want at most %d", p.Name, inflated, limit+1)
		}
	}
}
