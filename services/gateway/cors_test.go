package gateway_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/highgopress/highgopress/services/gateway"
)

func TestCORS(t *testing.T) {
	const allowed = "https://app.example.test"
	e := newEnv(t, func(c *gateway.Config) { c.CORSOrigins = []string{allowed} })
	const path = "/highgopress.counter.v1.CounterService/Like"

	preflight := func(origin string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodOptions, e.url+path, nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		// Browsers send the list lowercase, sorted, without spaces.
		req.Header.Set("Access-Control-Request-Headers", "authorization,connect-protocol-version,content-type,x-grpc-web")
		resp, err := e.http1.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := preflight(allowed)
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != allowed {
		t.Fatalf("allowed origin preflight: Allow-Origin=%q status=%d", got, resp.StatusCode)
	}
	if h := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")); !strings.Contains(h, "authorization") || !strings.Contains(h, "x-grpc-web") {
		t.Fatalf("Allow-Headers = %q", h)
	}
	if got := preflight("https://evil.example.test").Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Fatalf("foreign origin got Allow-Origin=%q", got)
	}

	// An actual cross-origin call exposes the protocol headers to scripts.
	req, _ := http.NewRequest(http.MethodPost, e.url+"/highgopress.counter.v1.CounterService/GetCounts",
		strings.NewReader(`{"items":[{"namespace":"article","id":"x"}]}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", allowed)
	res, err := e.http1.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Access-Control-Allow-Origin") != allowed {
		t.Fatalf("cross-origin call: %d %v", res.StatusCode, res.Header)
	}
	if exp := strings.ToLower(res.Header.Get("Access-Control-Expose-Headers")); !strings.Contains(exp, "grpc-status") || !strings.Contains(exp, "ratelimit-remaining") {
		t.Fatalf("Expose-Headers = %q", exp)
	}
}

// TestCORSRequestHeadersAnyOrderAndCase: a preflight is accepted whatever
// the order, letter case, spacing or repetition of the names in
// Access-Control-Request-Headers (header names are case-insensitive and
// browsers differ), and still refused when one name is not allowed.
func TestCORSRequestHeadersAnyOrderAndCase(t *testing.T) {
	const allowed = "https://app.example.test"
	e := newEnv(t, func(c *gateway.Config) { c.CORSOrigins = []string{allowed} })
	preflight := func(values ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodOptions, e.url+"/highgopress.counter.v1.CounterService/Like", nil)
		req.Header.Set("Origin", allowed)
		req.Header.Set("Access-Control-Request-Method", "POST")
		for _, v := range values {
			req.Header.Add("Access-Control-Request-Headers", v)
		}
		resp, err := e.http1.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, list := range [][]string{
		{"content-type,authorization"},
		{"Content-Type, Authorization"},
		{"X-Grpc-Web, content-type , X-User-Agent,AUTHORIZATION"},
		{"connect-protocol-version,content-type,Connect-Timeout-Ms"},
		{"content-type", "authorization"},
		{"authorization, authorization,content-type"},
	} {
		resp := preflight(list...)
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != allowed {
			t.Errorf("preflight with %q: Allow-Origin=%q, status %d", list, got, resp.StatusCode)
			continue
		}
		h := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
		if !strings.Contains(h, "content-type") {
			t.Errorf("preflight with %q: Allow-Headers=%q", list, h)
		}
	}
	for _, list := range []string{"Content-Type, X-Not-Allowed", "x-not-allowed,authorization"} {
		if got := preflight(list).Header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("preflight with %q (a header not allowed) got Allow-Origin=%q", list, got)
		}
	}
}
