package gateway_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/highgopress/highgopress/platform/testenv"
)

// TestPageLoadsSpendReadBudgets: loading the web page (GET / and its
// assets) spends the client IP's read budget, not its write budget, so
// browsing never uses up the budget a like needs; an unrouted POST still
// counts as a write.
func TestPageLoadsSpendReadBudgets(t *testing.T) {
	backend := newFakeBackend().serve(t)
	gw := startGateway(t, rateVars(t, backend, testenv.RedisAddr(t), unique("hgp:gwtest:page"), map[string]string{
		"HGP_RATE_WRITE_IP": "2-H",
		"HGP_RATE_READ_IP":  "6-H",
	}))
	do := func(method, path string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, gw.url+path, strings.NewReader(""))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := gw.http1.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header.Get("RateLimit-Limit")
	}
	for i := range 6 {
		if code, limit := do(http.MethodGet, "/"); code != http.StatusOK || limit != "6" {
			t.Fatalf("page load %d: status %d, RateLimit-Limit %q; want 200 on the read budget of 6", i, code, limit)
		}
	}
	if code, _ := do(http.MethodGet, "/"); code != http.StatusTooManyRequests {
		t.Fatalf("7th page load: status %d, want 429 once the read budget is spent", code)
	}
	for i := range 2 {
		if code, limit := do(http.MethodPost, "/no/such/path"); code == http.StatusTooManyRequests || limit != "2" {
			t.Fatalf("unrouted POST %d: status %d, RateLimit-Limit %q; want the write budget of 2", i, code, limit)
		}
	}
	if code, _ := do(http.MethodPost, "/no/such/path"); code != http.StatusTooManyRequests {
		t.Fatalf("3rd unrouted POST: status %d, want 429", code)
	}
}
