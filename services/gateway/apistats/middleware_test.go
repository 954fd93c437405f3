package apistats

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"connectrpc.com/connect"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/server"
)

type stubCounter struct {
	counterv1connect.UnimplementedCounterServiceHandler
}

func (stubCounter) Like(context.Context, *connect.Request[counterv1.LikeRequest]) (*connect.Response[counterv1.LikeResponse], error) {
	return connect.NewResponse(&counterv1.LikeResponse{Changed: true, Count: 1}), nil
}

func (stubCounter) GetCounts(context.Context, *connect.Request[counterv1.GetCountsRequest]) (*connect.Response[counterv1.GetCountsResponse], error) {
	return nil, connect.NewError(connect.CodeNotFound, errors.New("no such item"))
}

// TestMiddlewareCodesOverAllProtocols: a real Connect backend behind a
// reverse proxy (as in the gateway) behind the middleware; each protocol's
// success and error are counted with the right code.
func TestMiddlewareCodesOverAllProtocols(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle(counterv1connect.NewCounterServiceHandler(stubCounter{}))
	backendURL, _ := rpctest.Serve(t, mux)
	u, _ := url.Parse(backendURL)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = server.NewH2CTransport()

	for _, direct := range []bool{true, false} {
		var inner http.Handler = rp
		name := "proxied"
		if direct {
			inner, name = mux, "direct"
		}
		for _, p := range rpctest.Protocols {
			t.Run(name+"/"+p.Name, func(t *testing.T) {
				sink := &memSink{}
				rec := NewRecorder(logging.Discard(), sink, Config{})
				url, hc := rpctest.Serve(t, rec.Middleware(inner))
				client := counterv1connect.NewCounterServiceClient(hc, url, p.Opts...)
				for range 3 {
					if _, err := client.Like(context.Background(), connect.NewRequest(&counterv1.LikeRequest{})); err != nil {
						t.Fatal(err)
					}
				}
				for range 2 {
					_, err := client.GetCounts(context.Background(), connect.NewRequest(&counterv1.GetCountsRequest{}))
					if connect.CodeOf(err) != connect.CodeNotFound {
						t.Fatalf("GetCounts: %v", err)
					}
				}
				_, err := client.Unlike(context.Background(), connect.NewRequest(&counterv1.UnlikeRequest{}))
				if connect.CodeOf(err) != connect.CodeUnimplemented {
					t.Fatalf("Unlike: %v", err)
				}
				if err := rec.Close(); err != nil {
					t.Fatal(err)
				}
				got := sink.totals()
				want := map[string]int64{
					counterv1connect.CounterServiceLikeProcedure + " ok":              3,
					counterv1connect.CounterServiceGetCountsProcedure + " not_found":  2,
					counterv1connect.CounterServiceUnlikeProcedure + " unimplemented": 1,
				}
				if len(got) != len(want) {
					t.Fatalf("got %v, want %v", got, want)
				}
				for k, v := range want {
					if got[k] != v {
						t.Fatalf("got %v, want %v", got, want)
					}
				}
			})
		}
	}
}

// TestMiddlewareLocalRejections: errors written by gateway middleware with
// connect.ErrorWriter (rate limiter, auth) are counted by their code, on
// every protocol.
func TestMiddlewareLocalRejections(t *testing.T) {
	errw := connect.NewErrorWriter()
	reject := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = errw.Write(w, r, connect.NewError(connect.CodeResourceExhausted, errors.New("slow down")))
	})
	for _, p := range rpctest.Protocols {
		t.Run(p.Name, func(t *testing.T) {
			sink := &memSink{}
			rec := NewRecorder(logging.Discard(), sink, Config{})
			url, hc := rpctest.Serve(t, rec.Middleware(reject))
			client := counterv1connect.NewCounterServiceClient(hc, url, p.Opts...)
			_, err := client.Like(context.Background(), connect.NewRequest(&counterv1.LikeRequest{}))
			if connect.CodeOf(err) != connect.CodeResourceExhausted {
				t.Fatalf("%v", err)
			}
			_ = rec.Close()
			if got := sink.totals()[counterv1connect.CounterServiceLikeProcedure+" resource_exhausted"]; got != 1 {
				t.Fatalf("got %v", sink.totals())
			}
		})
	}
}

func gz(s string) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write([]byte(s))
	_ = zw.Close()
	return buf.Bytes()
}

func envelope(flags byte, payload []byte) []byte {
	out := make([]byte, 5+len(payload))
	out[0] = flags
	binary.BigEndian.PutUint32(out[1:], uint32(len(payload)))
	copy(out[5:], payload)
	return out
}

func TestStreamEndFramesInPieces(t *testing.T) {
	cases := []struct {
		name  string
		ctype string
		body  []byte
		want  connect.Code
		enc   string
	}{
		{"connect stream gzipped end frame", "application/connect+proto",
			append(envelope(0, []byte("msg")), envelope(0x03, gz(`{"error":{"code":"aborted"}}`))...), connect.CodeAborted, "gzip"},
		{"grpc-web gzipped trailer frame", "application/grpc-web",
			envelope(0x81, gz("grpc-status: 14\r\n")), connect.CodeUnavailable, "gzip"},
		{"grpc-web trailer in unknown encoding", "application/grpc-web",
			envelope(0x81, []byte("???")), connect.CodeUnknown, "br"},
		{"connect stream ok", "application/connect+proto",
			append(envelope(0, []byte("msg")), envelope(0x02, []byte(`{}`))...), OK, ""},
		{"connect stream error", "application/connect+json",
			append(envelope(0, []byte("msg")), envelope(0x02, []byte(`{"error":{"code":"resource_exhausted","message":"x"}}`))...), connect.CodeResourceExhausted, ""},
		{"connect stream without end", "application/connect+proto", envelope(0, []byte("msg")), connect.CodeUnknown, ""},
		{"grpc-web trailer frame", "application/grpc-web+proto",
			append(envelope(0, []byte("m")), envelope(0x80, []byte("grpc-status: 7\r\ngrpc-message: no\r\n"))...), connect.CodePermissionDenied, ""},
		{"grpc-web zero-length message then trailer", "application/grpc-web",
			append(envelope(0, nil), envelope(0x80, []byte("Grpc-Status:0\r\n"))...), OK, ""},
	}
	for _, c := range cases {
		for _, chunk := range []int{1, 2, 3, 7, 1 << 20} {
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if c.enc != "" {
					w.Header().Set("Connect-Content-Encoding", c.enc)
					w.Header().Set("Grpc-Encoding", c.enc)
				}
				for b := c.body; len(b) > 0; {
					n := min(chunk, len(b))
					_, _ = w.Write(b[:n])
					b = b[n:]
				}
			})
			sink := &memSink{}
			rec := NewRecorder(logging.Discard(), sink, Config{})
			r := httptest.NewRequest(http.MethodPost, "/a.v1.S/M", nil)
			r.Header.Set("Content-Type", c.ctype)
			rec.Middleware(h).ServeHTTP(httptest.NewRecorder(), r)
			_ = rec.Close()
			if got := sink.totals()["/a.v1.S/M "+codeString(int(c.want))]; got != 1 {
				t.Errorf("%s (chunks of %d): got %v, want %s", c.name, chunk, sink.totals(), codeString(int(c.want)))
			}
		}
	}
}

func TestConnectUnaryStatusFallbacks(t *testing.T) {
	cases := []struct {
		status int
		body   string
		want   connect.Code
	}{
		{200, `{"count":1}`, OK},
		{429, `{"code":"resource_exhausted","message":"x"}`, connect.CodeResourceExhausted},
		{429, `not json`, connect.CodeUnavailable},
		{404, ``, connect.CodeUnimplemented},
		{503, `{"code":"bogus"}`, connect.CodeUnknown},
		{500, ``, connect.CodeUnknown},
	}
	for _, c := range cases {
		sink := &memSink{}
		rec := NewRecorder(logging.Discard(), sink, Config{})
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(c.status)
			_, _ = w.Write([]byte(c.body))
		})
		r := httptest.NewRequest(http.MethodPost, "/a.v1.S/M", bytes.NewReader(nil))
		r.Header.Set("Content-Type", "application/json")
		rec.Middleware(h).ServeHTTP(httptest.NewRecorder(), r)
		_ = rec.Close()
		if got := sink.totals()["/a.v1.S/M "+codeString(int(c.want))]; got != 1 {
			t.Errorf("%d %q: got %v, want %s", c.status, c.body, sink.totals(), codeString(int(c.want)))
		}
	}
}

func TestHealthChecksAreNotCounted(t *testing.T) {
	sink := &memSink{}
	rec := NewRecorder(logging.Discard(), sink, Config{})
	r := httptest.NewRequest(http.MethodPost, "/grpc.health.v1.Health/Check", nil)
	rec.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).ServeHTTP(httptest.NewRecorder(), r)
	_ = rec.Close()
	if len(sink.totals()) != 0 {
		t.Fatalf("counted %v", sink.totals())
	}
}

// TestEncodedSlashIsNotCountedAsTheProcedure: a path with an encoded slash
// ("CounterService%2FLike") is not the Like procedure — the gateway answers
// it unimplemented — so it is counted as unknown, not as a Like.
func TestEncodedSlashIsNotCountedAsTheProcedure(t *testing.T) {
	sink := &memSink{}
	known := func(p string) bool { return p == counterv1connect.CounterServiceLikeProcedure }
	rec := NewRecorder(logging.Discard(), sink, Config{}, WithKnownProcedures(known))
	notFound := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = connect.NewErrorWriter().Write(w, r, connect.NewError(connect.CodeUnimplemented, errors.New("no such procedure")))
	})
	url, hc := rpctest.Serve(t, rec.Middleware(notFound))
	req, err := http.NewRequest(http.MethodPost, url+"/highgopress.counter.v1.CounterService%2FLike", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	_ = rec.Close()
	got := sink.totals()
	if got[counterv1connect.CounterServiceLikeProcedure+" unimplemented"] != 0 || got[UnknownProcedure+" unimplemented"] != 1 {
		t.Fatalf("counted %v; want one unknown call and no Like", got)
	}
}
