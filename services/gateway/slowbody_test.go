package gateway_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/services/gateway"
)

// slowBodyGateway is a gateway with a 1s read timeout in front of the fake
// backend (the body never completes, so no backend is involved).
func slowBodyGateway(t *testing.T) *runningGateway {
	t.Helper()
	fb := newFakeBackend()
	return startGateway(t, map[string]string{
		"HGP_GATEWAY_COUNTER_URLS": fb.serve(t),
		"HGP_RATE_ENABLED":         "false",
	}, gateway.WithServerOptions(server.WithReadTimeout(time.Second)))
}

// TestSlowBodyRequestTimeout: a body that has not fully arrived when the
// server's read timeout passes is answered with the standard 408 Request
// Timeout and a Connect error (deadline_exceeded) over HTTP/1.1 and h2c,
// and with grpc-status 4 (DEADLINE_EXCEEDED) for gRPC, never with the
// non-standard HTTP 499.
func TestSlowBodyRequestTimeout(t *testing.T) {
	gw := slowBodyGateway(t)
	tok := token(t, "slowpoke")

	t.Run("http1", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(gw.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
		head := "POST " + counterv1connect.CounterServiceLikeProcedure + " HTTP/1.1\r\nHost: gw\r\n" +
			"Content-Type: application/json\r\nAuthorization: Bearer " + tok + "\r\nContent-Length: 100\r\n\r\n{"
		if _, err := io.WriteString(conn, head); err != nil {
			t.Fatal(err)
		}
		// One more byte every 200ms (the client's pace), never reaching
		// 100 bytes before the response.
		type result struct {
			resp *http.Response
			body []byte
			err  error
		}
		got := make(chan result, 1)
		go func() {
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				got <- result{err: err}
				return
			}
			body, err := io.ReadAll(resp.Body)
			got <- result{resp, body, err}
		}()
		var res result
	loop:
		for i := 0; ; i++ {
			select {
			case res = <-got:
				break loop
			case <-time.After(200 * time.Millisecond):
			}
			if i < 90 {
				_, _ = conn.Write([]byte(" "))
			}
		}
		if res.err != nil {
			t.Fatalf("no response: %v", res.err)
		}
		checkTimeoutAnswer(t, res.resp, res.body)
	})

	t.Run("h2c", func(t *testing.T) {
		pr, pw := io.Pipe()
		defer pw.Close()
		go func() { _, _ = pw.Write([]byte("{")) }()
		req, _ := http.NewRequest(http.MethodPost, gw.url+counterv1connect.CounterServiceLikeProcedure, pr)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := gw.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		checkTimeoutAnswer(t, resp, body)
	})

	t.Run("grpc", func(t *testing.T) {
		pr, pw := io.Pipe()
		defer pw.Close()
		go func() { _, _ = pw.Write([]byte{0, 0, 0, 0, 50}) }()
		req, _ := http.NewRequest(http.MethodPost, gw.url+counterv1connect.CounterServiceLikeProcedure, pr)
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := gw.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		st := resp.Header.Get("Grpc-Status")
		if st == "" {
			st = resp.Trailer.Get("Grpc-Status")
		}
		if resp.StatusCode != http.StatusOK || st != "4" {
			t.Fatalf("gRPC slow body: HTTP %d grpc-status %q; want 200, 4", resp.StatusCode, st)
		}
	})
}

func checkTimeoutAnswer(t *testing.T, resp *http.Response, body []byte) {
	t.Helper()
	var e struct{ Code, Message string }
	_ = json.Unmarshal(body, &e)
	if resp.StatusCode != http.StatusRequestTimeout || e.Code != "deadline_exceeded" {
		t.Fatalf("slow body: HTTP %d %q; want 408 with a deadline_exceeded Connect error", resp.StatusCode, body)
	}
	t.Logf("HTTP %d %s %q", resp.StatusCode, e.Code, e.Message)
}
