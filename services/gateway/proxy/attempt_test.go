package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/services/gateway/proxy"
)

// stalled is a backend that never answers (like a SIGSTOPped process)
// until the test ends or the request is cancelled; headersFirst makes it
// send the response headers and part of the body first.
func stalled(t *testing.T, headersFirst bool) (string, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	release := make(chan struct{})
	u, _ := rpctest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if headersFirst {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(`{"count":`))
			http.NewResponseController(w).Flush()
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() { close(release) })
	return u, &hits
}

func serveProxyWith(t *testing.T, b proxy.Balancer, target proxy.Target, opts ...proxy.Option) string {
	t.Helper()
	p := proxy.New(logging.Discard(), b, signer(t), opts...)
	u, _ := rpctest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		r.ContentLength = int64(len(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(string(body))), nil }
		p.Forward(w, r, target)
	}))
	return u
}

// TestAttemptTimeout: an instance that does not answer (at all, or after
// the first bytes of a unary response) within the attempt timeout is
// reported to the balancer with ErrAttemptTimeout; a read is then answered
// by another instance, a write fails Unavailable at once and is not sent
// anywhere else; the request's own shorter deadline still wins
// (DeadlineExceeded, not the instance's fault).
func TestAttemptTimeout(t *testing.T) {
	const attempt = 300 * time.Millisecond
	var served atomic.Int64
	good, _ := rpctest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"count":"1"}`))
	}))
	for _, headersFirst := range []bool{false, true} {
		frozen, frozenHits := stalled(t, headersFirst)
		name := "silent"
		if headersFirst {
			name = "stalls mid-response"
		}
		for _, tc := range []struct {
			kind       string
			retry      bool
			timeoutHdr string
			status     int
			code       string
			served     int64
			attempt    bool // Done got ErrAttemptTimeout
		}{
			{"read", true, "", http.StatusOK, "", 1, true},
			{"write", false, "", http.StatusServiceUnavailable, "unavailable", 0, true},
			{"read with a shorter deadline", true, "100", http.StatusGatewayTimeout, "deadline_exceeded", 0, false},
		} {
			t.Run(name+"/"+tc.kind, func(t *testing.T) {
				served.Store(0)
				frozenHits.Store(0)
				seq := &sequence{urls: []*url.URL{mustURL(t, frozen), mustURL(t, good)}}
				target := proxy.Target{Service: "counter", Retry: tc.retry, Unary: true}
				purl := serveProxyWith(t, seq, target, proxy.WithAttemptTimeout(attempt))
				// The gateway bounds the request by the client's timeout;
				// here the handler does it.
				p := purl
				if tc.timeoutHdr != "" {
					p = serveDeadline(t, seq, target, 100*time.Millisecond, attempt)
				}
				req, _ := http.NewRequest(http.MethodPost, p+"/x.v1.S/M", strings.NewReader("{}"))
				req.Header.Set("Content-Type", "application/json")
				start := time.Now()
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				took := time.Since(start)
				var e struct{ Code, Message string }
				_ = json.Unmarshal(body, &e)
				if resp.StatusCode != tc.status || e.Code != tc.code || served.Load() != tc.served || frozenHits.Load() != 1 {
					t.Fatalf("HTTP %d %q, served elsewhere %d, frozen hits %d; want %d %q, %d, 1",
						resp.StatusCode, body, served.Load(), frozenHits.Load(), tc.status, tc.code, tc.served)
				}
				if took > 10*attempt {
					t.Fatalf("answered after %v; the attempt timeout is %v", took, attempt)
				}
				t.Logf("HTTP %d %s after %v", resp.StatusCode, e.Message, took.Round(time.Millisecond))
				waitDones(t, seq, int(1+tc.served))
				seq.mu.Lock()
				defer seq.mu.Unlock()
				if got := errors.Is(seq.dones[0], proxy.ErrAttemptTimeout); got != tc.attempt {
					t.Fatalf("first Done(%v): attempt timeout %v, want %v", seq.dones[0], got, tc.attempt)
				}
			})
		}
	}
}

// serveDeadline is serveProxyWith whose handler bounds each request by d,
// as the gateway does with the client's timeout.
func serveDeadline(t *testing.T, b proxy.Balancer, target proxy.Target, d, attempt time.Duration) string {
	t.Helper()
	p := proxy.New(logging.Discard(), b, signer(t), proxy.WithAttemptTimeout(attempt))
	u, _ := rpctest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		p.Forward(w, r.WithContext(ctx), target)
	}))
	return u
}

// TestHeadersTooLarge: a request whose headers exceed the limit is refused
// before any instance is picked: HTTP 431 with a Connect error for Connect
// unary, grpc-status 8 for gRPC. A backend advertising a smaller header
// list than the proxy's limit gets the same answer, reported to the
// balancer as a success (the instance is fine) and never retried.
func TestHeadersTooLarge(t *testing.T) {
	var hits atomic.Int64
	backend, _ := rpctest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
	}))
	seq := &sequence{urls: []*url.URL{mustURL(t, backend)}}
	purl := serveProxyWith(t, seq, proxy.Target{Service: "counter", Retry: true, Unary: true})
	send := func(base, ct string, extra int) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+"/x.v1.S/M", strings.NewReader("{}"))
		req.Header.Set("Content-Type", ct)
		req.Header.Set("X-Big", strings.Repeat("b", extra))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := send(purl, "application/json", 17<<10)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e struct{ Code, Message string }
	_ = json.Unmarshal(body, &e)
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || e.Code != "resource_exhausted" || hits.Load() != 0 {
		t.Fatalf("17 KiB header: HTTP %d %q, backend hits %d; want 431 resource_exhausted, 0", resp.StatusCode, body, hits.Load())
	}
	resp = send(purl, "application/grpc", 17<<10)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	st := resp.Header.Get("Grpc-Status")
	if st == "" {
		st = resp.Trailer.Get("Grpc-Status")
	}
	if resp.StatusCode != http.StatusOK || st != "8" {
		t.Fatalf("gRPC 17 KiB header: HTTP %d grpc-status %q; want 200, 8", resp.StatusCode, st)
	}
	seq.mu.Lock()
	if len(seq.dones) != 0 || seq.i != 0 {
		t.Fatalf("an instance was picked (%d) or told (%v)", seq.i, seq.dones)
	}
	seq.mu.Unlock()
	if resp := send(purl, "application/json", 15<<10); resp.StatusCode != http.StatusOK {
		t.Fatalf("15 KiB header: HTTP %d", resp.StatusCode)
	} else {
		resp.Body.Close()
	}

	// A backend whose HTTP/2 header list limit is 4 KiB.
	small := server.New(logging.Discard(), nil, server.WithMaxHeaderBytes(4<<10))
	small.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	hits.Store(0)
	smallBase := serveHTTPServer(t, small.HTTPServer())
	seq2 := &sequence{urls: []*url.URL{mustURL(t, smallBase), mustURL(t, smallBase)}}
	purl2 := serveProxyWith(t, seq2, proxy.Target{Service: "counter", Retry: true, Unary: true})
	// A first small call opens the connection, so the proxy's transport
	// knows the backend's limit (SETTINGS_MAX_HEADER_LIST_SIZE).
	if resp := send(purl2, "application/json", 10); resp.StatusCode != http.StatusOK {
		t.Fatalf("small call: HTTP %d", resp.StatusCode)
	} else {
		resp.Body.Close()
	}
	hits.Store(0)
	resp = send(purl2, "application/json", 8<<10)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || hits.Load() != 0 {
		t.Fatalf("8 KiB header to a 4 KiB backend: HTTP %d %q, hits %d", resp.StatusCode, body, hits.Load())
	}
	waitDones(t, seq2, 2)
	seq2.mu.Lock()
	defer seq2.mu.Unlock()
	if seq2.i != 2 || len(seq2.dones) != 2 || seq2.dones[1] != nil {
		t.Fatalf("picks %d, Done outcomes %v; want one pick, reported nil (not the instance's fault)", seq2.i, seq2.dones)
	}
}

// serveHTTPServer serves srv (h2c and HTTP/1.1, its own limits) on loopback.
func serveHTTPServer(t *testing.T, srv *http.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}
