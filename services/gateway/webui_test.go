package gateway_test

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// TestGatewayServesPage: the gateway serves the embedded page at / and its
// assets, while procedures and other paths still reach the RPC handling.
func TestGatewayServesPage(t *testing.T) {
	e := newEnv(t)
	get := func(method, path, ctype string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, e.url+path, strings.NewReader(""))
		if err != nil {
			t.Fatal(err)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := e.http1.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	resp, page := get(http.MethodGet, "/", "")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Fatalf("GET /: %d %v", resp.StatusCode, resp.Header)
	}
	refs := regexp.MustCompile(`(?:src|href)="(assets/[^"]+)"`).FindAllStringSubmatch(page, -1)
	if len(refs) != 2 {
		t.Fatalf("page references %v, want a script and a style sheet", refs)
	}
	for _, r := range refs {
		resp, body := get(http.MethodGet, "/"+r[1], "")
		if resp.StatusCode != http.StatusOK || len(body) == 0 || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
			t.Errorf("GET /%s: %d, %d bytes, %v", r[1], resp.StatusCode, len(body), resp.Header)
		}
	}
	// POST / is no page: the RPC handling answers an unknown procedure.
	if resp, body := get(http.MethodPost, "/", "application/json"); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "unimplemented") {
		t.Errorf("POST /: %d %s", resp.StatusCode, body)
	}
	// A Connect GET of a procedure still reaches it (the fake backend
	// answers GetCounts).
	q := `/highgopress.counter.v1.CounterService/GetCounts?encoding=json&message=` + `%7B%22items%22%3A%5B%7B%22namespace%22%3A%22article%22%2C%22id%22%3A%22a%22%7D%5D%7D`
	if resp, body := get(http.MethodGet, q, ""); resp.StatusCode != http.StatusOK || !strings.Contains(body, "counts") {
		t.Errorf("Connect GET: %d %s", resp.StatusCode, body)
	}
	if resp, _ := get(http.MethodGet, "/assets/missing-ABCDEFGH.js", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("missing asset: %d", resp.StatusCode)
	}
}
