package counter_test

import (
	"bytes"
	"encoding/binary"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
)

// goInternals are fragments of Go type names, parser internals and package
// paths that must never reach a client.
var goInternals = []string{"*counterv1", "unmarshal into", "strconv", "ParseInt", "proto: ", "Ã", "syntax error ("}

// TestDecodeErrorsSpeakTheAPI: requests that cannot be decoded, a bad
// Connect-Timeout-Ms header and non-ASCII names get InvalidArgument with a
// message naming the message or field, the offending value (escaped) and
// the rule — no Go type names or parser internals — and change nothing.
func TestDecodeErrorsSpeakTheAPI(t *testing.T) {
	e := newEnv(t)
	const likePath = "/highgopress.counter.v1.CounterService/Like"
	const incrPath = "/highgopress.counter.v1.CounterService/Increment"
	likeAs := func(user string) string { return e.signer.Sign(user, likePath) }
	incrAs := func(user string) string { return e.signer.Sign(user, incrPath) }

	post := func(t *testing.T, path, contentType string, body []byte, hdr ...string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, e.url+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", contentType)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := e.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = res.Body.Close() })
		return res
	}
	grpcFrame := func(payload []byte) []byte {
		out := make([]byte, 5, 5+len(payload))
		binary.BigEndian.PutUint32(out[1:], uint32(len(payload)))
		return append(out, payload...)
	}
	validLike, err := proto.Marshal(&counterv1.LikeRequest{Item: ref("articles", "a1")})
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		do   func(t *testing.T) rpcStatus
		want []string // substrings of the message, in order of appearance
	}{
		{"json: string where an int64 is expected", func(t *testing.T) rpcStatus {
			return connectStatus(t, post(t, incrPath, "application/json",
				[]byte(`{"item":{"namespace":"a","id":"b"},"metric":"views","delta":"abc","idempotencyKey":"key-00001"}`), "Hgp-Actor", incrAs("u1")))
		}, []string{"highgopress.counter.v1.IncrementRequest in JSON at line 1, column 61", `field delta: "abc" is not a 64-bit integer`}},
		{"json: fraction for an int64", func(t *testing.T) rpcStatus {
			return connectStatus(t, post(t, incrPath, "application/json", []byte(`{"delta":1.5}`), "Hgp-Actor", incrAs("u1")))
		}, []string{"line 1, column 10", "field delta: 1.5 is not a 64-bit integer"}},
		{"json: number where an object is expected", func(t *testing.T) rpcStatus {
			return connectStatus(t, post(t, likePath, "application/json", []byte(`{"item":5}`), "Hgp-Actor", likeAs("u1")))
		}, []string{"not a valid highgopress.counter.v1.LikeRequest in JSON at line 1, column 9: unexpected 5"}},
		{"json: truncated", func(t *testing.T) rpcStatus {
			return connectStatus(t, post(t, likePath, "application/json", []byte(`{"item":`), "Hgp-Actor", likeAs("u1")))
		}, []string{"highgopress.counter.v1.LikeRequest in JSON: the JSON ends too early"}},
		{"json: empty body", func(t *testing.T) rpcStatus {
			return connectStatus(t, post(t, likePath, "application/json", nil, "Hgp-Actor", likeAs("u1")))
		}, []string{"request message is empty: a highgopress.counter.v1.LikeRequest is a JSON object"}},
		{"json: number for a string field, escaped value", func(t *testing.T) rpcStatus {
			return connectStatus(t, post(t, likePath, "application/json", []byte("{\"item\":{\"namespace\":7}}"), "Hgp-Actor", likeAs("u1")))
		}, []string{"field namespace: 7 is not a JSON string"}},
		{"json: invalid UTF-8 in a string", func(t *testing.T) rpcStatus {
			return connectStatus(t, post(t, likePath, "application/json", []byte("{\"item\":{\"namespace\":\"a\xff\"}}"), "Hgp-Actor", likeAs("u1")))
		}, []string{"a string is not valid UTF-8"}},
		{"json: non-ASCII id names the rune", func(t *testing.T) rpcStatus {
			return connectStatus(t, post(t, likePath, "application/json", []byte(`{"item":{"namespace":"article","id":"héllo"}}`), "Hgp-Actor", likeAs("u1")))
		}, []string{"item.id: character 'é' (U+00E9) at offset 1 is not allowed"}},
		{"connect GET: bad message", func(t *testing.T) rpcStatus {
			q := url.Values{"encoding": {"json"}, "message": {`{"items":[{"namespace":true}]}`}}
			res, err := e.http.Get(e.url + "/highgopress.counter.v1.CounterService/GetCounts?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = res.Body.Close() })
			return connectStatus(t, res)
		}, []string{"highgopress.counter.v1.GetCountsRequest in JSON", "field namespace: true is not a JSON string"}},
		{"connect proto: garbage", func(t *testing.T) rpcStatus {
			return connectStatus(t, post(t, likePath, "application/proto", []byte{0xff, 0xff, 0xff}, "Hgp-Actor", likeAs("u1")))
		}, []string{"request message is not a valid highgopress.counter.v1.LikeRequest in protobuf encoding"}},
		{"grpc: garbage", func(t *testing.T) rpcStatus {
			return grpcStatus(t, post(t, likePath, "application/grpc", grpcFrame([]byte{0xff, 0xff, 0xff}), "Hgp-Actor", likeAs("u1"), "Te", "trailers"))
		}, []string{"request message is not a valid highgopress.counter.v1.LikeRequest in protobuf encoding"}},
		{"grpc-web: garbage", func(t *testing.T) rpcStatus {
			return grpcStatus(t, post(t, likePath, "application/grpc-web+proto", grpcFrame([]byte{0x0a, 0x05, 0x0a}), "Hgp-Actor", likeAs("u1")))
		}, []string{"request message is not a valid highgopress.counter.v1.LikeRequest in protobuf encoding"}},
		{"connect: Connect-Timeout-Ms not a number", func(t *testing.T) rpcStatus {
			return connectStatus(t, post(t, likePath, "application/proto", validLike, "Hgp-Actor", likeAs("u1"), "Connect-Timeout-Ms", "abc"))
		}, []string{`header Connect-Timeout-Ms: "abc" is not a timeout: must be 1-10 decimal digits (milliseconds)`}},
		{"connect: Connect-Timeout-Ms negative", func(t *testing.T) rpcStatus {
			return connectStatus(t, post(t, likePath, "application/json", []byte(`{"item":{"namespace":"a","id":"b"}}`), "Hgp-Actor", likeAs("u1"), "Connect-Timeout-Ms", "-5"))
		}, []string{`header Connect-Timeout-Ms: "-5" is not a timeout`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := c.do(t)
			t.Logf("%v: %s", st.code, st.msg)
			if st.code != connect.CodeInvalidArgument {
				t.Fatalf("code %v (%q); want invalid_argument", st.code, st.msg)
			}
			rest := st.msg
			for _, w := range c.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("message %q does not contain %q", st.msg, w)
				}
				rest = rest[i+len(w):]
			}
			for _, bad := range goInternals {
				if strings.Contains(st.msg, bad) {
					t.Fatalf("message %q exposes %q", st.msg, bad)
				}
			}
		})
	}
	// A well-formed request still works, with a valid timeout header too.
	res := post(t, likePath, "application/json", []byte(`{"item":{"namespace":"articles","id":"a1"}}`),
		"Hgp-Actor", likeAs("u1"), "Connect-Timeout-Ms", "5000")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("valid like: HTTP %d: %+v", res.StatusCode, connectStatus(t, res))
	}
	if n := e.outboxLen(t); n != 1 {
		t.Fatalf("outbox holds %d entries; want 1 (the valid like only)", n)
	}
}
