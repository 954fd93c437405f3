package gateway_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protowire"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/testenv"
)

// Compression bombs: what each inflates to. The compressed requests are
// ~1000× smaller and well within the gateway's body limit.
const (
	bigBomb   = 128 << 20 // over every limit
	smallBomb = 48 << 20  // over the counter's 256 KiB, under a gateway limit raised to 64 MiB
)

// gzipped compresses the output of write.
func gzipped(t *testing.T, write func(w io.Writer)) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	write(zw)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// repeat writes n bytes of c in chunks (never holding n bytes).
func repeat(w io.Writer, c byte, n int) {
	chunk := bytes.Repeat([]byte{c}, 64<<10)
	for n > 0 {
		k := min(n, len(chunk))
		_, _ = w.Write(chunk[:k])
		n -= k
	}
}

// protoBomb is a gzipped LikeRequest whose item id is size bytes.
func protoBomb(t *testing.T, size int) []byte {
	return gzipped(t, func(w io.Writer) {
		var ref []byte
		ref = protowire.AppendTag(ref, 1, protowire.BytesType)
		ref = protowire.AppendString(ref, "article")
		ref = protowire.AppendTag(ref, 2, protowire.BytesType)
		ref = protowire.AppendVarint(ref, uint64(size))
		var msg []byte
		msg = protowire.AppendTag(msg, 1, protowire.BytesType)
		msg = protowire.AppendVarint(msg, uint64(len(ref)+size))
		_, _ = w.Write(append(msg, ref...))
		repeat(w, 'a', size)
	})
}

// jsonBomb is a gzipped JSON LikeRequest whose item id is size bytes.
func jsonBomb(t *testing.T, size int) []byte {
	return gzipped(t, func(w io.Writer) {
		_, _ = io.WriteString(w, `{"item":{"namespace":"article","id":"`)
		repeat(w, 'a', size)
		_, _ = io.WriteString(w, `"}}`)
	})
}

// envelope frames a compressed message for gRPC, gRPC-Web and Connect
// streaming: flag 1 (compressed), big-endian length, payload.
func envelope(payload []byte) []byte {
	out := make([]byte, 5, 5+len(payload))
	out[0] = 1
	binary.BigEndian.PutUint32(out[1:], uint32(len(payload)))
	return append(out, payload...)
}

// rawResult is what a raw RPC request got back, in whatever protocol.
type rawResult struct {
	status  int
	code    string // Connect code name, or gRPC status number as text
	message string
}

func (r rawResult) String() string {
	return fmt.Sprintf("HTTP %d, code %q, message %q", r.status, r.code, r.message)
}

// rawCall posts body to the gateway with the given headers and decodes the
// outcome: Connect unary JSON error, gRPC/gRPC-Web status in headers or
// trailers, or the gRPC-Web trailer frame.
func rawCall(t *testing.T, gw *runningGateway, procedure string, hdr map[string]string, body []byte) rawResult {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, gw.url+procedure, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	req.Header.Set("Authorization", "Bearer "+token(t, "bomber"))
	resp, err := gw.client.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", procedure, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	res := rawResult{status: resp.StatusCode}
	ct := resp.Header.Get("Content-Type")
	switch {
	case strings.HasPrefix(ct, "application/grpc-web"):
		res.code, res.message = resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
		// Trailers in the body: a frame with flag 0x80.
		for len(data) >= 5 && res.code == "" {
			n := binary.BigEndian.Uint32(data[1:5])
			if int(n) > len(data)-5 {
				break
			}
			if data[0]&0x80 != 0 {
				for _, line := range strings.Split(string(data[5:5+n]), "\r\n") {
					k, v, _ := strings.Cut(line, ":")
					switch strings.ToLower(strings.TrimSpace(k)) {
					case "grpc-status":
						res.code = strings.TrimSpace(v)
					case "grpc-message":
						res.message = strings.TrimSpace(v)
					}
				}
			}
			data = data[5+n:]
		}
	case strings.HasPrefix(ct, "application/grpc"):
		res.code, res.message = resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
		if res.code == "" {
			res.code, res.message = resp.Trailer.Get("Grpc-Status"), resp.Trailer.Get("Grpc-Message")
		}
	case strings.HasPrefix(ct, "application/connect+"):
		// End-stream message: the last frame, flag 0x02, JSON.
		for len(data) >= 5 {
			n := binary.BigEndian.Uint32(data[1:5])
			if int(n) > len(data)-5 {
				break
			}
			if data[0]&0x02 != 0 {
				var end struct {
					Error struct{ Code, Message string }
				}
				_ = json.Unmarshal(data[5:5+n], &end)
				res.code, res.message = end.Error.Code, end.Error.Message
			}
			data = data[5+n:]
		}
	default:
		var e struct{ Code, Message string }
		_ = json.Unmarshal(data, &e)
		res.code, res.message = e.Code, e.Message
	}
	return res
}

// badInputEnv is the real counter behind a gateway with a short
// read-header timeout, plus vars.
func badInputEnv(t *testing.T, vars map[string]string) (*runningGateway, *counterProc) {
	t.Helper()
	redisAddr := testenv.RedisAddr(t)
	c := startCounter(t, redisAddr, nil)
	v := map[string]string{
		"HGP_GATEWAY_COUNTER_URLS":        "http://" + c.addr,
		"HGP_RATE_ENABLED":                "false",
		"HGP_GATEWAY_READ_HEADER_TIMEOUT": "500ms",
	}
	for k, val := range vars {
		v[k] = val
	}
	return startGateway(t, v), c
}

// bombCase is one compressed request and the outcome it must get.
type bombCase struct {
	name string
	hdr  map[string]string
	body []byte
	code string // Connect code name (Connect) or gRPC status number
	http int    // HTTP status (200 for gRPC and gRPC-Web)
	msg  string // part of the error message
}

func bombCases(pb, jb []byte, connectCode, grpcCode string, httpStatus int, msg string) []bombCase {
	like := map[string]string{"Connect-Protocol-Version": "1", "Content-Encoding": "gzip"}
	with := func(base map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range base {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	return []bombCase{
		{"connect-proto/Content-Encoding", with(like, "Content-Type", "application/proto"), pb, connectCode, httpStatus, msg},
		{"connect-json/Content-Encoding", with(like, "Content-Type", "application/json"), jb, connectCode, httpStatus, msg},
		{"grpc/Grpc-Encoding", map[string]string{"Content-Type": "application/grpc", "Grpc-Encoding": "gzip", "Te": "trailers"}, envelope(pb), grpcCode, http.StatusOK, msg},
		{"grpc-web/Grpc-Encoding", map[string]string{"Content-Type": "application/grpc-web+proto", "Grpc-Encoding": "gzip", "X-Grpc-Web": "1"}, envelope(pb), grpcCode, http.StatusOK, msg},
	}
}

func runBombCases(t *testing.T, gw *runningGateway, cases []bombCase) {
	t.Helper()
	for _, tc := range cases {
		res := rawCall(t, gw, counterv1connect.CounterServiceLikeProcedure, tc.hdr, tc.body)
		if res.status != tc.http || res.code != tc.code || !strings.Contains(res.message, tc.msg) {
			t.Errorf("%s: %v; want HTTP %d, code %s, message containing %q", tc.name, res, tc.http, tc.code, tc.msg)
		} else {
			t.Logf("%s: %v", tc.name, res)
		}
	}
}

// TestCompressionBombs: requests that inflate to 128 MiB, on every
// protocol's compression header, are refused at the gateway with
// ResourceExhausted: it inflates each into a discarding counter and stops
// at the message limit (256 KiB), so a bomb costs it neither memory nor
// more than 256 KiB of inflating, and the body is never forwarded.
// Corrupt gzip is InvalidArgument, an unknown encoding Unimplemented (from
// the counter). With the gateway's limit raised, a smaller bomb reaches the
// counter, which refuses it the same way without inflating it in memory.
// No state changes.
func TestCompressionBombs(t *testing.T) {
	gw, counter := badInputEnv(t, nil)
	pb, jb := protoBomb(t, bigBomb), jsonBomb(t, bigBomb)
	t.Logf("bombs: protobuf %d bytes, JSON %d bytes on the wire, each %d MiB inflated", len(pb), len(jb), bigBomb>>20)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rssBefore := counter.peakRSS(t)
	runBombCases(t, gw, bombCases(pb, jb, "resource_exhausted", "8", http.StatusTooManyRequests,
		"decompressed request message exceeds the limit of 262144 bytes"))
	// Connect streaming framing (Connect-Content-Encoding) is checked the
	// same way, envelope by envelope.
	res := rawCall(t, gw, counterv1connect.CounterServiceLikeProcedure,
		map[string]string{"Content-Type": "application/connect+proto", "Connect-Content-Encoding": "gzip", "Connect-Protocol-Version": "1"}, envelope(pb))
	if res.code != "resource_exhausted" {
		t.Errorf("connect streaming framing: %v; want resource_exhausted", res)
	}
	runtime.ReadMemStats(&after)
	wire := int64(len(pb)*4 + len(jb))
	t.Logf("gateway (this process) allocated %d KiB while refusing %d KiB of bombs", (after.TotalAlloc-before.TotalAlloc)>>10, wire>>10)
	if grew := int64(after.TotalAlloc - before.TotalAlloc); grew > 32<<20 {
		t.Errorf("gateway process allocated %d MiB while checking bombs", grew>>20)
	}

	// Not gzip at all, cut short, and an encoding nobody supports: precise
	// errors too.
	small := gzipped(t, func(w io.Writer) { repeat(w, 'z', 4096) })
	truncated := small[:len(small)-6]
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		body []byte
		want string
	}{
		{"connect corrupt gzip", map[string]string{"Content-Type": "application/proto", "Content-Encoding": "gzip", "Connect-Protocol-Version": "1"}, []byte("definitely not gzip"), "invalid_argument"},
		{"grpc corrupt gzip", map[string]string{"Content-Type": "application/grpc", "Grpc-Encoding": "gzip", "Te": "trailers"}, envelope([]byte("definitely not gzip")), "3"},
		{"grpc-web truncated gzip", map[string]string{"Content-Type": "application/grpc-web+proto", "Grpc-Encoding": "gzip"}, envelope(truncated), "3"},
		{"connect unknown encoding", map[string]string{"Content-Type": "application/proto", "Content-Encoding": "br", "Connect-Protocol-Version": "1"}, []byte("x"), "unimplemented"},
		{"grpc unknown encoding", map[string]string{"Content-Type": "application/grpc", "Grpc-Encoding": "br", "Te": "trailers"}, envelope([]byte("x")), "12"},
	} {
		res := rawCall(t, gw, counterv1connect.CounterServiceLikeProcedure, tc.hdr, tc.body)
		if res.code != tc.want {
			t.Errorf("%s: %v; want code %s", tc.name, res, tc.want)
		} else {
			t.Logf("%s: %v", tc.name, res)
		}
	}

	// Behind a gateway whose limit is raised to 64 MiB, a 48 MiB bomb
	// reaches the counter, which refuses it past its own 256 KiB limit.
	lax, _ := startGatewayFor(t, counter, map[string]string{"HGP_MAX_MESSAGE_BYTES": strconv.Itoa(64 << 20)})
	runBombCases(t, lax, bombCases(protoBomb(t, smallBomb), jsonBomb(t, smallBomb), "resource_exhausted", "8",
		http.StatusTooManyRequests, "is larger than configured max 262144"))
	rssAfter := counter.peakRSS(t)
	t.Logf("counter peak RSS %d → %d MiB", rssBefore>>20, rssAfter>>20)
	if grew := rssAfter - rssBefore; grew > 24<<20 {
		t.Errorf("counter's peak RSS grew by %d MiB: a bomb was inflated in memory", grew>>20)
	}
	assertNoLikes(t, gw)
}

// startGatewayFor starts another gateway in front of an existing counter.
func startGatewayFor(t *testing.T, c *counterProc, vars map[string]string) (*runningGateway, *counterProc) {
	t.Helper()
	v := map[string]string{"HGP_GATEWAY_COUNTER_URLS": "http://" + c.addr, "HGP_RATE_ENABLED": "false"}
	for k, val := range vars {
		v[k] = val
	}
	return startGateway(t, v), c
}

// assertNoLikes checks that the bomber never liked anything.
func assertNoLikes(t *testing.T, gw *runningGateway) {
	t.Helper()
	cs := counterv1connect.NewCounterServiceClient(gw.client, gw.url)
	res, err := cs.GetCounts(context.Background(), connect.NewRequest(&counterv1.GetCountsRequest{
		Items: []*counterv1.ItemRef{item(strings.Repeat("a", 10))},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if n := res.Msg.GetCounts()[0].GetLikes(); n != 0 {
		t.Fatalf("state changed: %d likes", n)
	}
}

// TestOversizedBodyRealCounter: a body over the gateway's limit is refused
// at the door with ResourceExhausted on every protocol; the counter's state
// is unchanged.
func TestOversizedBodyRealCounter(t *testing.T) {
	gw, _ := badInputEnv(t, nil)
	id := unique("huge") + strings.Repeat("x", 2<<20)
	for _, p := range rpctest.Protocols {
		cs := counterv1connect.NewCounterServiceClient(gw.client, gw.url, append(p.Opts, withHeaders(bearer(token(t, "big"))))...)
		_, err := cs.Like(context.Background(), connect.NewRequest(&counterv1.LikeRequest{Item: item(id)}))
		wantCode(t, err, connect.CodeResourceExhausted, "exceeds the limit of 1048576 bytes")
	}
	// Within the gateway's limit but over the counter's message limit
	// (256 KiB): the counter refuses it, also ResourceExhausted.
	mid := strings.Repeat("m", 512<<10)
	for _, p := range rpctest.Protocols {
		cs := counterv1connect.NewCounterServiceClient(gw.client, gw.url, append(p.Opts, withHeaders(bearer(token(t, "big"))))...)
		_, err := cs.Like(context.Background(), connect.NewRequest(&counterv1.LikeRequest{Item: item(mid)}))
		wantCode(t, err, connect.CodeResourceExhausted, "")
	}
}

// TestUnknownProcedureRealCounter: unknown procedures are Unimplemented in
// every protocol, answered by the gateway.
func TestUnknownProcedureRealCounter(t *testing.T) {
	gw, _ := badInputEnv(t, nil)
	for _, p := range rpctest.Protocols {
		for _, path := range []string{"/highgopress.counter.v1.CounterService/Reset", "/highgopress.admin.v1.Admin/Drop"} {
			c := connect.NewClient[counterv1.LikeRequest, counterv1.LikeResponse](gw.client, gw.url+path,
				append(p.Opts, withHeaders(bearer(token(t, "x"))))...)
			_, err := c.CallUnary(context.Background(), connect.NewRequest(&counterv1.LikeRequest{Item: item("u")}))
			wantCode(t, err, connect.CodeUnimplemented, "unknown procedure")
		}
	}
}

// TestSlowHeaders: a client dribbling header bytes (HTTP/1.1 request line
// and headers, or the h2c connection preface) is disconnected once the
// read-header timeout (500ms here) passes.
func TestSlowHeaders(t *testing.T) {
	gw, _ := badInputEnv(t, nil)
	addr := strings.TrimPrefix(gw.url, "http://")
	for name, prefix := range map[string]string{
		"http1": "POST " + counterv1connect.CounterServiceGetCountsProcedure + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n",
		"h2c":   "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			closed := make(chan error, 1)
			go func() {
				_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err := io.Copy(io.Discard, conn)
				closed <- err
			}()
			// One byte every 50ms, never finishing (bounded: 10s).
			dribble := []byte(prefix + "X-Slow: " + strings.Repeat("a", 200))
			var writeErr error
		loop:
			for i := 0; i < len(dribble); i++ {
				select {
				case err := <-closed:
					closed <- err
					break loop
				case <-time.After(50 * time.Millisecond): // the client's pace, not synchronisation
				}
				if _, writeErr = conn.Write(dribble[i : i+1]); writeErr != nil {
					break
				}
			}
			var readErr error
			select {
			case readErr = <-closed:
			case <-time.After(10 * time.Second):
				t.Fatal("connection still open after 10s")
			}
			took := time.Since(start)
			t.Logf("%s: connection closed after %v (read: %v, write: %v)", name, took.Round(time.Millisecond), readErr, writeErr)
			if took > 3*time.Second {
				t.Fatalf("slow client kept its connection for %v; read-header timeout is 500ms", took)
			}
			var ne net.Error
			if readErr != nil && errors.As(readErr, &ne) && ne.Timeout() {
				t.Fatal("the server never closed the connection")
			}
		})
	}
}
