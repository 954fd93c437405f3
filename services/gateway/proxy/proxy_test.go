package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/grpcreflect"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/identity"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/gateway/proxy"
)

func signer(t testing.TB) *identity.Signer {
	s, err := identity.NewSigner([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sequence is a Balancer handing out the given backends in order, then the
// last one; it records Done outcomes.
type sequence struct {
	mu    sync.Mutex
	urls  []*url.URL
	i     int
	dones []error
}

func (s *sequence) Pick(context.Context, string) (proxy.Backend, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.urls) == 0 {
		return proxy.Backend{}, fmt.Errorf("%w: empty", proxy.ErrNoBackend)
	}
	u := s.urls[min(s.i, len(s.urls)-1)]
	s.i++
	return proxy.Backend{URL: u, Done: func(err error) {
		s.mu.Lock()
		s.dones = append(s.dones, err)
		s.mu.Unlock()
	}}, nil
}

// waitDones polls until the balancer was told n outcomes.
func waitDones(t *testing.T, seq *sequence, n int) {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, "balancer outcomes", func() bool {
		seq.mu.Lock()
		defer seq.mu.Unlock()
		return len(seq.dones) >= n
	})
}

func serveProxy(t *testing.T, b proxy.Balancer, target proxy.Target) (string, *http.Client) {
	t.Helper()
	p := proxy.New(logging.Discard(), b, signer(t))
	return rpctest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Test-Buffer") != "" {
			// What the gateway does: buffer the body so it can be replayed.
			body, err := io.ReadAll(r.Body)
			if err != nil {
				t.Error(err)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
			r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		}
		p.Forward(w, r, target)
	}))
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestBidiStreamPassesThrough: a bidirectional gRPC / Connect stream (server
// reflection) works through the proxy: bodies are streamed both ways and
// trailers arrive, without the proxy decoding anything.
func TestBidiStreamPassesThrough(t *testing.T) {
	backend := server.New(logging.Discard(), []string{counterv1connect.CounterServiceName})
	burl, _ := rpctest.Serve(t, backend.Handler())
	purl, client := serveProxy(t, &sequence{urls: []*url.URL{mustURL(t, burl)}}, proxy.Target{Service: "counter"})
	for _, p := range rpctest.Protocols[:2] { // gRPC-Web has no bidi streams
		t.Run(p.Name, func(t *testing.T) {
			stream := grpcreflect.NewClient(client, purl, p.Opts...).NewStream(context.Background())
			names, err := stream.ListServices()
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, n := range names {
				found = found || n == counterv1connect.CounterServiceName
			}
			if !found {
				t.Fatalf("ListServices = %v", names)
			}
			// A second message on the same stream.
			files, err := stream.FileContainingSymbol(protoreflect.FullName(counterv1connect.CounterServiceName))
			if err != nil || len(files) == 0 {
				t.Fatalf("FileContainingSymbol = %d files, %v", len(files), err)
			}
			if _, err := stream.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
		})
	}
}

// TestRetryPolicy: after a backend failed mid-request, a read is tried on
// the next instance but a write is not (it may have been applied).
func TestRetryPolicy(t *testing.T) {
	var aborted, served atomic.Int64
	bad, _ := rpctest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		aborted.Add(1)
		panic(http.ErrAbortHandler) // resets the stream: no response
	}))
	good, _ := rpctest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
	}))
	for _, tc := range []struct {
		name     string
		retry    bool
		buffered bool
		status   int
		served   int64
	}{
		{"write", false, true, http.StatusServiceUnavailable, 0},
		{"read", true, true, http.StatusOK, 1},
		{"read with a body that cannot be replayed", true, false, http.StatusServiceUnavailable, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			aborted.Store(0)
			served.Store(0)
			seq := &sequence{urls: []*url.URL{mustURL(t, bad), mustURL(t, good)}}
			purl, _ := serveProxy(t, seq, proxy.Target{Service: "counter", Retry: tc.retry})
			req, _ := http.NewRequest(http.MethodPost, purl+"/x.v1.S/M", strings.NewReader("{}"))
			req.Header.Set("Content-Type", "application/json")
			if tc.buffered {
				req.Header.Set("Test-Buffer", "1")
			}
			resp, err := (&http.Client{}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || aborted.Load() != 1 || served.Load() != tc.served {
				t.Fatalf("status %d, aborted %d, served %d", resp.StatusCode, aborted.Load(), served.Load())
			}
			// The client may have the whole body (its length is known)
			// just before the proxy closes the backend's: wait for Done.
			waitDones(t, seq, int(1+tc.served))
			seq.mu.Lock()
			defer seq.mu.Unlock()
			if len(seq.dones) != int(1+tc.served) || seq.dones[0] == nil || proxy.IsDialError(seq.dones[0]) ||
				(tc.served == 1 && seq.dones[1] != nil) {
				t.Fatalf("Done outcomes %v", seq.dones)
			}
		})
	}
}

// TestHeaders: credentials and client identity never reach the backend;
// the signed identity and forwarding headers do.
func TestHeaders(t *testing.T) {
	got := make(chan http.Header, 1)
	backend, _ := rpctest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
	}))
	purl, _ := serveProxy(t, &sequence{urls: []*url.URL{mustURL(t, backend)}}, proxy.Target{Service: "counter", Actor: "alice"})
	req, _ := http.NewRequest(http.MethodPost, purl+"/x.v1.S/M", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer x")
	req.Header.Set("Cookie", "session=1")
	req.Header["hgp-actor"] = []string{"v1:1:x:mallory"}
	req.Header.Set("X-Forwarded-For", "10.9.9.9")
	req.Header.Set("X-Custom", "kept")
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := <-got
	if h.Get("Authorization") != "" || h.Get("Cookie") != "" || h.Get("X-Custom") != "kept" {
		t.Fatalf("backend headers %v", h)
	}
	if user, err := signer(t).Verify(h.Get(identity.Header), "/x.v1.S/M"); err != nil || user != "alice" || len(h.Values(identity.Header)) != 1 {
		t.Fatalf("identity %q: %q, %v", h.Values(identity.Header), user, err)
	}
	if h.Get("X-Forwarded-For") != "127.0.0.1" {
		t.Fatalf("X-Forwarded-For = %q (client-supplied values must not pass)", h.Get("X-Forwarded-For"))
	}
}

func TestNoBackend(t *testing.T) {
	purl, client := serveProxy(t, &sequence{}, proxy.Target{Service: "counter"})
	req, _ := http.NewRequest(http.MethodPost, purl+"/x.v1.S/M", strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Code, Message string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || out.Code != "unavailable" || out.Message != "no backend available: no healthy counter instance" {
		t.Fatalf("status %d, %+v", resp.StatusCode, out)
	}
}

// excluding hands out bad to Pick and, to PickExcluding(bad), good; it
// records what was excluded.
type excluding struct {
	bad, good *url.URL
	mu        sync.Mutex
	excluded  []string
}

func (e *excluding) Pick(context.Context, string) (proxy.Backend, error) {
	return proxy.Backend{URL: e.bad}, nil
}

func (e *excluding) PickExcluding(_ context.Context, _, hostPort string) (proxy.Backend, error) {
	e.mu.Lock()
	e.excluded = append(e.excluded, hostPort)
	e.mu.Unlock()
	if hostPort == e.bad.Host {
		return proxy.Backend{URL: e.good}, nil
	}
	return proxy.Backend{URL: e.bad}, nil
}

// TestRetryUsesPickExcluding: a balancer that can avoid an instance is
// asked for another one than the instance that just failed.
func TestRetryUsesPickExcluding(t *testing.T) {
	bad, _ := rpctest.Serve(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) }))
	good, _ := rpctest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
	}))
	b := &excluding{bad: mustURL(t, bad), good: mustURL(t, good)}
	purl, client := serveProxy(t, b, proxy.Target{Service: "counter", Retry: true})
	req, _ := http.NewRequest(http.MethodPost, purl+"/x.v1.S/GetM", strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Test-Buffer", "1")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	if resp.StatusCode != http.StatusOK || len(b.excluded) != 1 || b.excluded[0] != b.bad.Host {
		t.Fatalf("status %d, excluded %v", resp.StatusCode, b.excluded)
	}
}

// TestUnaryResponseCutOff: a backend that dies after sending the response
// headers and part of the body. For a unary RPC the client gets a clean
// Unavailable in its protocol (the proxy read the response before
// answering) and the balancer learns the error; a streaming RPC's response
// is passed on as it comes, so its client sees the stream break.
func TestUnaryResponseCutOff(t *testing.T) {
	backend, _ := rpctest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"count":`))
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	}))
	for _, unary := range []bool{true, false} {
		t.Run(fmt.Sprintf("unary=%v", unary), func(t *testing.T) {
			seq := &sequence{urls: []*url.URL{mustURL(t, backend)}}
			purl, client := serveProxy(t, seq, proxy.Target{Service: "counter", Unary: unary})
			req, _ := http.NewRequest(http.MethodPost, purl+"/x.v1.S/M", strings.NewReader("{}"))
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, readErr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if unary {
				var out struct{ Code string }
				if resp.StatusCode != http.StatusServiceUnavailable || json.Unmarshal(body, &out) != nil || out.Code != "unavailable" {
					t.Fatalf("HTTP %d, body %q, read error %v", resp.StatusCode, body, readErr)
				}
			} else if resp.StatusCode != http.StatusOK || readErr == nil {
				t.Fatalf("streamed: HTTP %d, body %q, read error %v; want the break passed on", resp.StatusCode, body, readErr)
			}
			waitDones(t, seq, 1)
			seq.mu.Lock()
			defer seq.mu.Unlock()
			if len(seq.dones) != 1 || seq.dones[0] == nil {
				t.Fatalf("Done outcomes %v", seq.dones)
			}
		})
	}
}

// TestUnaryLargeResponseStreams: a unary response larger than
// MaxBufferedResponse is not held whole; it arrives intact.
func TestUnaryLargeResponseStreams(t *testing.T) {
	big := bytes.Repeat([]byte("z"), proxy.MaxBufferedResponse+12345)
	backend, _ := rpctest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/proto")
		_, _ = w.Write(big)
	}))
	seq := &sequence{urls: []*url.URL{mustURL(t, backend)}}
	purl, client := serveProxy(t, seq, proxy.Target{Service: "counter", Unary: true})
	req, _ := http.NewRequest(http.MethodPost, purl+"/x.v1.S/M", strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/proto")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("got %d bytes (err %v), want %d", len(got), err, len(big))
	}
	waitDones(t, seq, 1)
	seq.mu.Lock()
	defer seq.mu.Unlock()
	if len(seq.dones) != 1 || seq.dones[0] != nil {
		t.Fatalf("Done outcomes %v", seq.dones)
	}
}
