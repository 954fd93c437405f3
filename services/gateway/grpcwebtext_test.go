package gateway_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/gateway"
)

// nodeTools returns the paths of node and npm. The real client is the
// point of the test: without them it fails, it never skips.
func nodeTools(t *testing.T) (node, npm string) {
	t.Helper()
	node, errNode := exec.LookPath("node")
	npm, errNpm := exec.LookPath("npm")
	if errNode != nil || errNpm != nil {
		t.Fatalf("node and npm are required (Debian: apt-get install nodejs npm): %v %v", errNode, errNpm)
	}
	return node, npm
}

// grpcWebTextClient installs the Node client of testdata/grpcwebtext (npm
// ci: the versions pinned by its package-lock.json) in a temporary
// directory and returns that directory.
func grpcWebTextClient(t *testing.T, npm string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"package.json", "package-lock.json", "client.js"} {
		b, err := os.ReadFile(filepath.Join("testdata", "grpcwebtext", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci: %v\n%s", err, out)
	}
	return dir
}

type webCall struct {
	Code     int             `json:"code"`
	Message  string          `json:"message"`
	Response json.RawMessage `json:"response"`
}

type webCounts struct {
	Counts []struct {
		Likes       string `json:"likes"`
		ViewerLiked bool   `json:"viewerLiked"`
	} `json:"counts"`
}

// TestGRPCWebTextRealClient: the grpc-web npm package in its default mode
// (grpcwebtext: application/grpc-web-text, base64 bodies), run by Node
// with an XMLHttpRequest polyfill, calls the real counter through the
// gateway: unary calls (rpcCall) and a server-streaming read
// (serverStreaming) succeed, a 300-item read whose response is flushed in
// several chunks decodes, and errors arrive with their gRPC codes
// (unauthenticated, invalid argument from the counter, unimplemented from
// the gateway). The like is in Redis exactly once.
func TestGRPCWebTextRealClient(t *testing.T) {
	node, npm := nodeTools(t)
	gw, _ := badInputEnv(t, nil)
	dir := grpcWebTextClient(t, npm)
	proto, err := filepath.Abs("../../proto/highgopress/counter/v1/counter.proto")
	if err != nil {
		t.Fatal(err)
	}
	itemID := unique("webtext")
	rdb := counterRedis(t, testenv.RedisAddr(t))
	t.Cleanup(func() { dropItemKeys(rdb, "article", itemID) })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.js", gw.url, proto, token(t, "webtext-user"), itemID)
	cmd.Dir = dir
	cmd.Stderr = &testenv.SyncBuffer{}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node client: %v\n%s\n%s", err, out, cmd.Stderr)
	}
	t.Logf("client: %s", out)
	var res struct {
		Like, LikeAgain, Counts, NoToken, BadToken, Invalid, Unknown webCall
		CountsMany                                                   struct{ Code, Items int }
		Stream                                                       struct {
			Data   []json.RawMessage `json:"data"`
			Status *int              `json:"status"`
			Code   *int              `json:"code"`
			Ended  bool              `json:"ended"`
		}
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("client output: %v", err)
	}
	var like, again struct {
		Changed bool   `json:"changed"`
		Count   string `json:"count"`
	}
	if res.Like.Code != 0 || json.Unmarshal(res.Like.Response, &like) != nil || !like.Changed || like.Count != "1" {
		t.Errorf("Like: %+v %s", res.Like, res.Like.Response)
	}
	if res.LikeAgain.Code != 0 || json.Unmarshal(res.LikeAgain.Response, &again) != nil || again.Changed || again.Count != "1" {
		t.Errorf("second Like: %+v %s", res.LikeAgain, res.LikeAgain.Response)
	}
	var counts webCounts
	if res.Counts.Code != 0 || json.Unmarshal(res.Counts.Response, &counts) != nil || len(counts.Counts) != 1 ||
		counts.Counts[0].Likes != "1" || !counts.Counts[0].ViewerLiked {
		t.Errorf("GetCounts: %+v %s", res.Counts, res.Counts.Response)
	}
	if res.CountsMany.Code != 0 || res.CountsMany.Items != 300 {
		t.Errorf("GetCounts of 300 items: %+v", res.CountsMany)
	}
	var streamed webCounts
	if len(res.Stream.Data) != 1 || json.Unmarshal(res.Stream.Data[0], &streamed) != nil || len(streamed.Counts) != 1 ||
		streamed.Counts[0].Likes != "1" || !res.Stream.Ended || (res.Stream.Code != nil && *res.Stream.Code != 0) {
		t.Errorf("serverStreaming GetCounts: %+v", res.Stream)
	}
	for name, tc := range map[string]struct {
		got  webCall
		want connect.Code
	}{
		"Like without token":         {res.NoToken, connect.CodeUnauthenticated},
		"GetCounts with a bad token": {res.BadToken, connect.CodeUnauthenticated},
		"Like of an invalid item":    {res.Invalid, connect.CodeInvalidArgument},
		"unknown method":             {res.Unknown, connect.CodeUnimplemented},
	} {
		if tc.got.Code != int(tc.want) {
			t.Errorf("%s: code %d %q; want %d (%v)", name, tc.got.Code, tc.got.Message, tc.want, tc.want)
		}
	}

	// The counter holds exactly one like.
	cs := counterv1connect.NewCounterServiceClient(gw.client, gw.url)
	got, err := cs.GetCounts(context.Background(), connect.NewRequest(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item(itemID)}}))
	if err != nil {
		t.Fatal(err)
	}
	if n := got.Msg.GetCounts()[0].GetLikes(); n != 1 {
		t.Fatalf("likes = %d, want 1", n)
	}
}

// webTextCall posts a gRPC-Web text request (body already base64) and
// returns the response's content type, its decoded body and the
// grpc-status (headers, or the trailer frame in the body).
func webTextCall(t *testing.T, e *env, procedure, contentType, body string, hdr map[string]string) (ct string, decoded []byte, status string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.url+procedure, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Grpc-Web", "1")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.http1.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	ct = resp.Header.Get("Content-Type")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: HTTP %d %q", procedure, resp.StatusCode, raw)
	}
	// The body is base64, possibly several padded chunks.
	for rest := string(raw); rest != ""; {
		end := len(rest)
		if i := strings.IndexByte(rest, '='); i >= 0 {
			end = (i/4 + 1) * 4
		}
		chunk, err := base64.StdEncoding.DecodeString(rest[:min(end, len(rest))])
		if err != nil {
			t.Fatalf("response body is not base64 chunks: %v: %q", err, raw)
		}
		decoded = append(decoded, chunk...)
		rest = rest[min(end, len(rest)):]
	}
	status = resp.Header.Get("Grpc-Status")
	for b := decoded; len(b) >= 5 && status == ""; {
		n := int(binary.BigEndian.Uint32(b[1:5]))
		if n > len(b)-5 {
			break
		}
		if b[0]&0x80 != 0 {
			for _, line := range strings.Split(string(b[5:5+n]), "\r\n") {
				if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "grpc-status") {
					status = strings.TrimSpace(v)
				}
			}
		}
		b = b[5+n:]
	}
	return ct, decoded, status
}

// frameOf is one uncompressed gRPC-Web data frame holding m.
func frameOf(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 5, 5+len(b))
	binary.BigEndian.PutUint32(out[1:], uint32(len(b)))
	return append(out, b...)
}

// TestGRPCWebTextTranslation: the gateway's gRPC-Web text layer, byte by
// byte (the real client is TestGRPCWebTextRealClient): request bodies in one
// base64 string or several padded chunks are decoded, responses come back
// base64 with the text content type; the body limit and the compression
// checks apply to the decoded bytes; a body that is not base64 is
// InvalidArgument; health checks work in text mode too; binary gRPC-Web is
// untouched.
func TestGRPCWebTextTranslation(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config) { c.MaxBodyBytes = 4 << 10 })
	tok := map[string]string{"Authorization": "Bearer " + token(t, "texter")}
	like := frameOf(t, &counterv1.LikeRequest{Item: item("text-1")})
	// RED metrics read the code from the text body's trailer frame.
	redLabels := func(code string) map[string]string {
		return map[string]string{"procedure": counterv1connect.CounterServiceLikeProcedure, "protocol": "grpc_web", "code": code}
	}
	okBefore := metricValue(t, "hgp_rpc_server_requests_total", redLabels("ok"))
	unknownBefore := metricValue(t, "hgp_rpc_server_requests_total", redLabels("unknown"))

	for name, body := range map[string]string{
		"one string":    base64.StdEncoding.EncodeToString(like),
		"padded chunks": base64.StdEncoding.EncodeToString(like[:4]) + base64.StdEncoding.EncodeToString(like[4:9]) + base64.StdEncoding.EncodeToString(like[9:]),
	} {
		for _, ct := range []string{"application/grpc-web-text", "application/grpc-web-text+proto"} {
			gotCT, dec, st := webTextCall(t, e, counterv1connect.CounterServiceLikeProcedure, ct, body, tok)
			if !strings.HasPrefix(gotCT, "application/grpc-web-text") || st != "0" || len(dec) < 5 {
				t.Fatalf("%s, %s: content type %q, status %q, %d bytes", name, ct, gotCT, st, len(dec))
			}
			var res counterv1.LikeResponse
			if n := int(binary.BigEndian.Uint32(dec[1:5])); dec[0] != 0 || proto.Unmarshal(dec[5:5+n], &res) != nil || res.GetCount() != 1 {
				t.Fatalf("%s, %s: response %x", name, ct, dec)
			}
		}
	}

	if got := metricValue(t, "hgp_rpc_server_requests_total", redLabels("ok")) - okBefore; got != 4 {
		t.Errorf("hgp_rpc_server_requests_total{code=ok} of the text calls grew by %v, want 4", got)
	}
	if got := metricValue(t, "hgp_rpc_server_requests_total", redLabels("unknown")) - unknownBefore; got != 0 {
		t.Errorf("%v successful text calls were counted as unknown", got)
	}

	// Errors.
	big := frameOf(t, &counterv1.LikeRequest{Item: item(strings.Repeat("x", 5<<10))})
	bomb := envelope(protoBomb(t, 1<<20))
	for name, tc := range map[string]struct {
		body, want string
		hdr        map[string]string
	}{
		"not base64":              {"!!!!" + base64.StdEncoding.EncodeToString(like), "3", nil},
		"truncated base64":        {base64.StdEncoding.EncodeToString(like)[:7], "3", nil},
		"over the body limit":     {base64.StdEncoding.EncodeToString(big), "8", nil},
		"gzip bomb in text":       {base64.StdEncoding.EncodeToString(bomb), "8", map[string]string{"Grpc-Encoding": "gzip"}},
		"unknown procedure":       {base64.StdEncoding.EncodeToString(like), "12", nil},
		"write without its token": {base64.StdEncoding.EncodeToString(like), "16", map[string]string{"Authorization": ""}},
	} {
		hdr := map[string]string{}
		for k, v := range tok {
			hdr[k] = v
		}
		for k, v := range tc.hdr {
			hdr[k] = v
		}
		proc := counterv1connect.CounterServiceLikeProcedure
		if name == "unknown procedure" {
			proc = "/highgopress.counter.v1.CounterService/Reset"
		}
		if _, _, st := webTextCall(t, e, proc, "application/grpc-web-text", tc.body, hdr); st != tc.want {
			t.Errorf("%s: grpc-status %q, want %s", name, st, tc.want)
		}
	}
	if calls, _ := e.backend.recorded(); len(calls) != 4 {
		t.Errorf("the backend saw %d calls, want the 4 valid ones", len(calls))
	}

	// Health checks (answered by the gateway) in text mode.
	if ct, _, st := webTextCall(t, e, "/grpc.health.v1.Health/Check", "application/grpc-web-text+proto",
		base64.StdEncoding.EncodeToString(envelopeOf(nil)), nil); st != "0" || !strings.HasPrefix(ct, "application/grpc-web-text") {
		t.Errorf("health check in text mode: %q, status %q", ct, st)
	}

	// Binary gRPC-Web is untouched.
	req, _ := http.NewRequest(http.MethodPost, e.url+counterv1connect.CounterServiceLikeProcedure, bytes.NewReader(like))
	req.Header.Set("Content-Type", "application/grpc-web+proto")
	req.Header.Set("Authorization", tok["Authorization"])
	resp, err := e.http1.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Type") != "application/grpc-web+proto" || len(raw) < 5 || raw[0] != 0 {
		t.Fatalf("binary gRPC-Web: %q %x", resp.Header.Get("Content-Type"), raw)
	}
}

// envelopeOf is an uncompressed frame of payload.
func envelopeOf(payload []byte) []byte {
	out := make([]byte, 5, 5+len(payload))
	binary.BigEndian.PutUint32(out[1:], uint32(len(payload)))
	return append(out, payload...)
}
