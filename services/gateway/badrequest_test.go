package gateway_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
)

// connectJSONError decodes a Connect unary error answer; it fails the test
// unless the body is a Connect JSON error.
func connectJSONError(t *testing.T, resp *http.Response) (code, msg string) {
	t.Helper()
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e struct{ Code, Message string }
	if err := json.Unmarshal(body, &e); err != nil || e.Code == "" {
		t.Fatalf("HTTP %d, Content-Type %q: not a Connect error: %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	return e.Code, e.Message
}

// TestConnectGETBadQuery: a Connect GET whose message is not valid base64,
// or whose parameters are missing, is InvalidArgument (HTTP 400) from the
// gateway, not an "unknown" 500 from the counter; a gzip-compressed GET
// message is checked against the message limit like a compressed body; a
// well-formed GET (base64, padded or not) still works.
func TestConnectGETBadQuery(t *testing.T) {
	gw, _ := badInputEnv(t, nil)
	get := func(q url.Values) *http.Response {
		t.Helper()
		resp, err := gw.http1.Get(gw.url + counterv1connect.CounterServiceGetCountsProcedure + "?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	pb, err := proto.Marshal(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item(unique("get"))}})
	if err != nil {
		t.Fatal(err)
	}
	for name, q := range map[string]url.Values{
		"invalid base64":       {"encoding": {"proto"}, "base64": {"1"}, "message": {"!!!"}},
		"standard alphabet":    {"encoding": {"proto"}, "base64": {"1"}, "message": {"+/+/"}},
		"bad padding":          {"encoding": {"proto"}, "base64": {"1"}, "message": {"QQ=A"}},
		"missing message":      {"encoding": {"json"}},
		"missing encoding":     {"message": {"{}"}},
		"gzip not gzip":        {"encoding": {"proto"}, "base64": {"1"}, "compression": {"gzip"}, "message": {base64.RawURLEncoding.EncodeToString([]byte("not gzip"))}},
		"gzip bad base64 too":  {"encoding": {"proto"}, "base64": {"1"}, "compression": {"gzip"}, "message": {"***"}},
		"json not base64 flag": {"encoding": {"json"}, "base64": {"1"}, "message": {`{"items":[]}`}},
	} {
		resp := get(q)
		code, msg := connectJSONError(t, resp)
		if resp.StatusCode != http.StatusBadRequest || code != "invalid_argument" {
			t.Errorf("%s: HTTP %d %s %q; want 400 invalid_argument", name, resp.StatusCode, code, msg)
		} else {
			t.Logf("%s: HTTP %d %s %q", name, resp.StatusCode, code, msg)
		}
	}
	// A compression bomb in the query (≈ 8 KiB of base64 inflating to 8 MiB).
	bomb := protoBomb(t, 8<<20)
	resp := get(url.Values{"encoding": {"proto"}, "base64": {"1"}, "compression": {"gzip"}, "message": {base64.RawURLEncoding.EncodeToString(bomb)}})
	if code, msg := connectJSONError(t, resp); code != "resource_exhausted" || !strings.Contains(msg, "decompressed request message exceeds") {
		t.Errorf("GET bomb (%d bytes): HTTP %d %s %q; want resource_exhausted", len(bomb), resp.StatusCode, code, msg)
	}
	// Valid requests still reach the counter: unpadded (as connect-go
	// sends), padded, and gzip-compressed.
	for name, q := range map[string]url.Values{
		"unpadded": {"encoding": {"proto"}, "base64": {"1"}, "message": {base64.RawURLEncoding.EncodeToString(pb)}},
		"padded":   {"encoding": {"proto"}, "base64": {"1"}, "message": {base64.URLEncoding.EncodeToString(pb)}},
		"gzip":     {"encoding": {"proto"}, "base64": {"1"}, "compression": {"gzip"}, "message": {base64.RawURLEncoding.EncodeToString(gzipped(t, func(w io.Writer) { _, _ = w.Write(pb) }))}},
	} {
		resp := get(q)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var out counterv1.GetCountsResponse
		if resp.StatusCode != http.StatusOK || proto.Unmarshal(body, &out) != nil || len(out.GetCounts()) != 1 {
			t.Errorf("%s: HTTP %d %q", name, resp.StatusCode, body)
		}
	}
}

// TestEncodedProcedurePath: a procedure path with percent-encoding (an
// encoded slash, or an encoded letter) is routed on the path as sent, which
// names no procedure: Unimplemented from the gateway in the request's
// protocol (a Connect JSON error, not a plain-text 404 from the backend),
// for a client with or without a token, over POST and GET; the counter is
// never asked.
func TestEncodedProcedurePath(t *testing.T) {
	gw, _ := badInputEnv(t, nil)
	body := []byte(`{"item":{"namespace":"article","id":"encoded-path"}}`)
	for _, path := range []string{
		"/highgopress.counter.v1.CounterService%2FLike",
		"/highgopress.counter.v1.CounterService%2fLike",
		"/highgopress.counter.v1.CounterService/%4Cike",
		"/highgopress.counter.v1.CounterService%2FGetCounts",
	} {
		for _, tok := range []string{"", token(t, "slash")} {
			req, _ := http.NewRequest(http.MethodPost, gw.url+path, strings.NewReader(string(body)))
			req.Header.Set("Content-Type", "application/json")
			if tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			resp, err := gw.http1.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			code, msg := connectJSONError(t, resp)
			if resp.StatusCode != http.StatusNotFound || code != "unimplemented" || !strings.Contains(msg, "%") {
				t.Errorf("POST %s (token %v): HTTP %d %s %q; want 404 unimplemented naming the path as sent", path, tok != "", resp.StatusCode, code, msg)
			}
		}
		resp, err := gw.http1.Get(gw.url + path + "?encoding=json&message=%7B%7D")
		if err != nil {
			t.Fatal(err)
		}
		if code, _ := connectJSONError(t, resp); resp.StatusCode != http.StatusNotFound || code != "unimplemented" {
			t.Errorf("GET %s: HTTP %d %s", path, resp.StatusCode, code)
		}
		// gRPC: its own framing.
		res := rawCall(t, gw, path, map[string]string{"Content-Type": "application/grpc", "Te": "trailers"}, envelope(nil))
		if res.code != "12" {
			t.Errorf("gRPC %s: %v; want grpc-status 12", path, res)
		}
	}
}

// TestLargeHeadersRealCounter: request headers the gateway's server accepts
// (HTTP/1.1 allows up to MaxHeaderBytes + 4 KiB of raw header bytes) but
// that would exceed the header list a counter accepts over HTTP/2 are the
// client's error: HTTP 431 with a Connect error (resource_exhausted) for
// Connect, grpc-status 8 for gRPC, before any backend is tried — never a
// 503 after trying every instance. The instance stays in service: a normal
// call right after works.
func TestLargeHeadersRealCounter(t *testing.T) {
	gw, _ := badInputEnv(t, nil)
	body := `{"items":[{"namespace":"article","id":"big-headers"}]}`
	check := func(name string, resp *http.Response) {
		t.Helper()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			t.Errorf("%s: HTTP %d %q; want 431", name, resp.StatusCode, b)
			return
		}
		code, msg := connectJSONError(t, resp)
		if code != "resource_exhausted" || !strings.Contains(msg, "request headers exceed the limit") {
			t.Errorf("%s: %s %q", name, code, msg)
		}
	}
	// HTTP/1.1: 16 to 20 KiB of raw headers, which the gateway's server
	// reads (its limit is MaxHeaderBytes + 4 KiB of buffer).
	for _, size := range []int{16 << 10, 17 << 10, 18 << 10, 19<<10 + 512} {
		req, _ := http.NewRequest(http.MethodPost, gw.url+counterv1connect.CounterServiceGetCountsProcedure, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		// Several headers, as a client with many cookies would send.
		for i := 0; i*1024 < size; i++ {
			req.Header.Add("X-Filler", strings.Repeat("f", 1000))
		}
		resp, err := gw.http1.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("HTTP/1.1 with %d bytes of headers", size), resp)
	}
	// h2c: a header list the gateway's server accepts (16 KiB + 320 as
	// HTTP/2 counts) that no longer fits once forwarded.
	req, _ := http.NewRequest(http.MethodPost, gw.url+counterv1connect.CounterServiceGetCountsProcedure, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for range 15 {
		req.Header.Add("X-Filler", strings.Repeat("f", 1000))
	}
	req.Header.Add("X-Filler", strings.Repeat("f", 600))
	resp, err := gw.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	check("h2c with ≈ 16.2 KiB of headers", resp)
	// gRPC-Web over HTTP/1.1: its own framing (HTTP 200, grpc-status 8).
	req, _ = http.NewRequest(http.MethodPost, gw.url+counterv1connect.CounterServiceGetCountsProcedure, strings.NewReader(""))
	req.Header.Set("Content-Type", "application/grpc-web+proto")
	req.Header.Set("X-Filler", strings.Repeat("g", 17<<10))
	resp, err = gw.http1.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if st := resp.Header.Get("Grpc-Status"); resp.StatusCode != http.StatusOK || st != "8" {
		t.Errorf("gRPC-Web with 17 KiB of headers: HTTP %d grpc-status %q; want 200, 8", resp.StatusCode, st)
	}
	// The counter was never blamed: a normal call works at once.
	resp, err = gw.http1.Post(gw.url+counterv1connect.CounterServiceGetCountsProcedure, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("normal call after the large ones: HTTP %d %q", resp.StatusCode, b)
	}
}
