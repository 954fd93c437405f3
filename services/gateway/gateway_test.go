package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"google.golang.org/protobuf/reflect/protoreflect"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/identity"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/gateway"
	"github.com/highgopress/highgopress/services/gateway/route"
)

// TestEveryRPCOverEveryProtocol sends each public RPC through the gateway
// over Connect (JSON), gRPC and gRPC-Web, on h2c and (where the protocol
// allows) HTTP/1.1, and checks that the backend saw the token's subject.
func TestEveryRPCOverEveryProtocol(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, p := range rpctest.Protocols {
		for _, transport := range []string{"h2c", "http1"} {
			if transport == "http1" && p.Name == "grpc" {
				continue // gRPC needs HTTP/2
			}
			t.Run(p.Name+"/"+transport, func(t *testing.T) {
				hc := e.client
				if transport == "http1" {
					hc = e.http1
				}
				user := "user-" + p.Name + "-" + transport
				cs, fs := clients(e, hc, p, withHeaders(bearer(token(t, user))))
				e.backend.reset()
				id := "a-" + p.Name + "-" + transport

				like, err := cs.Like(ctx, connect.NewRequest(&counterv1.LikeRequest{Item: item(id)}))
				if err != nil || !like.Msg.Changed || like.Msg.Count != 1 {
					t.Fatalf("Like = %v, %v", like, err)
				}
				counts, err := cs.GetCounts(ctx, connect.NewRequest(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item(id)}}))
				if err != nil || len(counts.Msg.Counts) != 1 || counts.Msg.Counts[0].Likes != 1 || !counts.Msg.Counts[0].ViewerLiked {
					t.Fatalf("GetCounts = %v, %v", counts, err)
				}
				unlike, err := cs.Unlike(ctx, connect.NewRequest(&counterv1.UnlikeRequest{Item: item(id)}))
				if err != nil || !unlike.Msg.Changed || unlike.Msg.Count != 0 {
					t.Fatalf("Unlike = %v, %v", unlike, err)
				}
				inc, err := cs.Increment(ctx, connect.NewRequest(&counterv1.IncrementRequest{Item: item(id), Metric: "views", Delta: 3, IdempotencyKey: "key-" + id}))
				if err != nil || inc.Msg.Value != 3 {
					t.Fatalf("Increment = %v, %v", inc, err)
				}
				fol, err := fs.Follow(ctx, connect.NewRequest(&counterv1.FollowRequest{UserId: "bob"}))
				if err != nil || !fol.Msg.Changed || fol.Msg.Following != 1 {
					t.Fatalf("Follow = %v, %v", fol, err)
				}
				stats, err := fs.GetUserStats(ctx, connect.NewRequest(&counterv1.GetUserStatsRequest{UserIds: []string{user}}))
				if err != nil || len(stats.Msg.Stats) != 1 || stats.Msg.Stats[0].Following != 1 {
					t.Fatalf("GetUserStats = %v, %v", stats, err)
				}
				unf, err := fs.Unfollow(ctx, connect.NewRequest(&counterv1.UnfollowRequest{UserId: "bob"}))
				if err != nil || !unf.Msg.Changed || unf.Msg.Following != 0 {
					t.Fatalf("Unfollow = %v, %v", unf, err)
				}

				calls, headers := e.backend.recorded()
				want := []string{
					counterv1connect.CounterServiceLikeProcedure,
					counterv1connect.CounterServiceGetCountsProcedure,
					counterv1connect.CounterServiceUnlikeProcedure,
					counterv1connect.CounterServiceIncrementProcedure,
					counterv1connect.FollowServiceFollowProcedure,
					counterv1connect.FollowServiceGetUserStatsProcedure,
					counterv1connect.FollowServiceUnfollowProcedure,
				}
				if len(calls) != len(want) {
					t.Fatalf("backend saw %d calls, want %d: %+v", len(calls), len(want), calls)
				}
				for i, c := range calls {
					if c.Procedure != want[i] || !c.HasActor || c.Actor != user {
						t.Errorf("call %d = %+v, want %s as %s", i, c, want[i], user)
					}
				}
				for _, h := range headers {
					if v := h.Values("Authorization"); len(v) != 0 {
						t.Errorf("backend received Authorization %q", v)
					}
				}
			})
		}
	}
}

// TestCurlJSON posts JSON exactly as curl does (HTTP/1.1, no Connect
// headers) and reads anonymously.
func TestCurlJSON(t *testing.T) {
	e := newEnv(t)
	post := func(path, tok, body string) (int, map[string]any) {
		req, err := http.NewRequest(http.MethodPost, e.url+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := e.http1.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("%s: decode: %v", path, err)
		}
		return resp.StatusCode, out
	}
	code, out := post(counterv1connect.CounterServiceLikeProcedure, token(t, "alice"), `{"item":{"namespace":"article","id":"curl-1"}}`)
	if code != http.StatusOK || out["changed"] != true || out["count"] != "1" {
		t.Fatalf("Like: %d %v", code, out)
	}
	code, out = post(counterv1connect.CounterServiceLikeProcedure, "", `{"item":{"namespace":"article","id":"curl-1"}}`)
	if code != http.StatusUnauthorized || out["code"] != "unauthenticated" || out["message"] != "missing bearer token" {
		t.Fatalf("anonymous Like: %d %v", code, out)
	}
	code, out = post(counterv1connect.CounterServiceGetCountsProcedure, "", `{"items":[{"namespace":"article","id":"curl-1"}]}`)
	counts, _ := out["counts"].([]any)
	if code != http.StatusOK || len(counts) != 1 || counts[0].(map[string]any)["likes"] != "1" {
		t.Fatalf("GetCounts: %d %v", code, out)
	}
	if _, liked := counts[0].(map[string]any)["viewerLiked"]; liked {
		t.Fatalf("anonymous GetCounts reports viewerLiked: %v", out)
	}
}

// TestConnectGET reads with Connect's HTTP GET (cacheable reads), and checks
// that writes cannot be sent as GET.
func TestConnectGET(t *testing.T) {
	e := newEnv(t)
	for _, p := range []rpctest.Protocol{rpctest.Protocols[0], {Name: "connect-proto"}} {
		t.Run(p.Name, func(t *testing.T) {
			e.backend.reset()
			cs, _ := clients(e, e.client, p, connect.WithHTTPGet(), withHeaders(bearer(token(t, "alice"))))
			resp, err := cs.GetCounts(context.Background(), connect.NewRequest(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item("g1")}}))
			if err != nil || len(resp.Msg.Counts) != 1 {
				t.Fatalf("GetCounts = %v, %v", resp, err)
			}
			calls, _ := e.backend.recorded()
			if len(calls) != 1 || calls[0].HTTPMethod != http.MethodGet || calls[0].Actor != "alice" {
				t.Fatalf("backend saw %+v, want one GET as alice", calls)
			}
		})
	}
	e.backend.reset()
	req, _ := http.NewRequest(http.MethodGet, e.url+counterv1connect.CounterServiceLikeProcedure+"?encoding=json&message=%7B%7D&connect=v1", nil)
	req.Header.Set("Authorization", "Bearer "+token(t, "alice"))
	resp, err := e.http1.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" || e.backend.hits.Load() != 0 {
		t.Fatalf("GET Like: %d Allow=%q backend hits=%d", resp.StatusCode, resp.Header.Get("Allow"), e.backend.hits.Load())
	}
}

// TestMissingTokenReadsAnonymously: reads work without a token and reach the
// backend without identity; writes are refused before the backend.
func TestMissingToken(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, p := range rpctest.Protocols {
		t.Run(p.Name, func(t *testing.T) {
			cs, fs := clients(e, e.client, p)
			e.backend.reset()
			_, err := cs.Like(ctx, connect.NewRequest(&counterv1.LikeRequest{Item: item("m1")}))
			wantCode(t, err, connect.CodeUnauthenticated, "missing bearer token")
			_, err = fs.Follow(ctx, connect.NewRequest(&counterv1.FollowRequest{UserId: "bob"}))
			wantCode(t, err, connect.CodeUnauthenticated, "missing bearer token")
			if n := e.backend.hits.Load(); n != 0 {
				t.Fatalf("backend received %d requests for unauthenticated writes", n)
			}
			if _, err := cs.GetCounts(ctx, connect.NewRequest(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item("m1")}})); err != nil {
				t.Fatalf("anonymous GetCounts: %v", err)
			}
			if _, err := fs.GetUserStats(ctx, connect.NewRequest(&counterv1.GetUserStatsRequest{UserIds: []string{"bob"}})); err != nil {
				t.Fatalf("anonymous GetUserStats: %v", err)
			}
			calls, headers := e.backend.recorded()
			if len(calls) != 2 || calls[0].HasActor || calls[1].HasActor {
				t.Fatalf("anonymous reads: backend saw %+v", calls)
			}
			for _, h := range headers {
				if h.Get(identity.Header) != "" {
					t.Fatalf("anonymous read carried %s", identity.Header)
				}
			}
		})
	}
}

// TestForgedIdentityHeader: whatever Hgp-Actor a client sends (forged, or
// even correctly signed for another user), the backend sees only the
// gateway's header naming the token's subject, or none for anonymous reads.
func TestForgedIdentityHeader(t *testing.T) {
	e := newEnv(t)
	signer, err := identity.NewSigner([]byte(identitySecret))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	forged := map[string]string{
		"garbage":          "mallory",
		"forged signature": "v1:" + "1700000000" + ":AAAA:mallory",
		"validly signed":   signer.Sign("mallory", "/highgopress.counter.v1.CounterService/Like"),
	}
	for _, p := range rpctest.Protocols {
		for name, value := range forged {
			t.Run(p.Name+"/"+name, func(t *testing.T) {
				h := bearer(token(t, "alice"))
				h.Add(identity.Header, value)
				h.Add(identity.Header, value)
				cs, _ := clients(e, e.client, p, withHeaders(h))
				e.backend.reset()
				if _, err := cs.Like(ctx, connect.NewRequest(&counterv1.LikeRequest{Item: item("f-" + p.Name)})); err != nil {
					t.Fatalf("Like: %v", err)
				}
				anon := http.Header{}
				anon.Set(identity.Header, value)
				csAnon, _ := clients(e, e.client, p, withHeaders(anon))
				if _, err := csAnon.GetCounts(ctx, connect.NewRequest(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item("x")}})); err != nil {
					t.Fatalf("anonymous GetCounts: %v", err)
				}
				calls, headers := e.backend.recorded()
				if len(calls) != 2 || calls[0].Actor != "alice" || calls[1].HasActor {
					t.Fatalf("backend saw %+v; want alice, then anonymous", calls)
				}
				if v := headers[0].Values(identity.Header); len(v) != 1 || v[0] == value {
					t.Fatalf("write carried %s %q", identity.Header, v)
				}
				if v := headers[1].Values(identity.Header); len(v) != 0 {
					t.Fatalf("anonymous read carried %s %q", identity.Header, v)
				}
			})
		}
	}

	// Over HTTP/1.1 header names arrive as the client spells them.
	e.backend.reset()
	req, _ := http.NewRequest(http.MethodPost, e.url+counterv1connect.CounterServiceLikeProcedure, strings.NewReader(`{"item":{"namespace":"article","id":"case"}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token(t, "alice"))
	req.Header["hgp-actor"] = []string{signer.Sign("mallory", "/highgopress.counter.v1.CounterService/Like")}
	req.Header["HGP-ACTOR"] = []string{signer.Sign("mallory", "/highgopress.counter.v1.CounterService/Like")}
	resp, err := e.http1.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	calls, headers := e.backend.recorded()
	if resp.StatusCode != http.StatusOK || len(calls) != 1 || calls[0].Actor != "alice" {
		t.Fatalf("status %d, backend saw %+v", resp.StatusCode, calls)
	}
	n := 0
	for k, vs := range headers[0] {
		if strings.EqualFold(k, identity.Header) {
			n += len(vs)
		}
	}
	if n != 1 {
		t.Fatalf("backend received %d identity header values, want 1", n)
	}
}

// TestWriteAttributedToSubject: the API has no field naming the acting user;
// a write counts for the token's subject and no one else.
func TestWriteAttributedToSubject(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, p := range rpctest.Protocols {
		t.Run(p.Name, func(t *testing.T) {
			id := "attr-" + p.Name
			aliceID, bobID := "alice-"+p.Name, "bob-"+p.Name
			alice, aliceF := clients(e, e.client, p, withHeaders(bearer(token(t, aliceID))))
			bob, bobF := clients(e, e.client, p, withHeaders(bearer(token(t, bobID))))
			if _, err := alice.Like(ctx, connect.NewRequest(&counterv1.LikeRequest{Item: item(id)})); err != nil {
				t.Fatal(err)
			}
			if _, err := aliceF.Follow(ctx, connect.NewRequest(&counterv1.FollowRequest{UserId: "carol-" + p.Name})); err != nil {
				t.Fatal(err)
			}
			req := connect.NewRequest(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item(id)}})
			a, err := alice.GetCounts(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			b, err := bob.GetCounts(ctx, connect.NewRequest(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item(id)}}))
			if err != nil {
				t.Fatal(err)
			}
			if a.Msg.Counts[0].Likes != 1 || !a.Msg.Counts[0].ViewerLiked || b.Msg.Counts[0].ViewerLiked {
				t.Fatalf("alice sees %v, bob sees %v", a.Msg.Counts[0], b.Msg.Counts[0])
			}
			st, err := bobF.GetUserStats(ctx, connect.NewRequest(&counterv1.GetUserStatsRequest{UserIds: []string{aliceID, bobID}}))
			if err != nil {
				t.Fatal(err)
			}
			if st.Msg.Stats[0].Following != 1 || st.Msg.Stats[1].Following != 0 {
				t.Fatalf("stats %v: the follow must be alice's", st.Msg.Stats)
			}
			e.backend.mu.Lock()
			likers := e.backend.likes["article/"+id]
			e.backend.mu.Unlock()
			if len(likers) != 1 || !likers[aliceID] {
				t.Fatalf("likers = %v, want only %s", likers, aliceID)
			}
		})
	}
}

// TestOversizedBody: bodies above the limit are refused with
// ResourceExhausted before the backend sees anything, whether or not the
// client announced the length.
func TestOversizedBody(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config) { c.MaxBodyBytes = 1024 })
	ctx := context.Background()
	big := item(strings.Repeat("x", 2000))
	for _, p := range rpctest.Protocols {
		t.Run(p.Name, func(t *testing.T) {
			cs, _ := clients(e, e.client, p, withHeaders(bearer(token(t, "alice"))))
			e.backend.reset()
			_, err := cs.Like(ctx, connect.NewRequest(&counterv1.LikeRequest{Item: big}))
			wantCode(t, err, connect.CodeResourceExhausted, "exceeds the limit of 1024 bytes")
			_, err = cs.GetCounts(ctx, connect.NewRequest(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{big}}))
			wantCode(t, err, connect.CodeResourceExhausted, "exceeds the limit of 1024 bytes")
			if n := e.backend.hits.Load(); n != 0 {
				t.Fatalf("backend received %d requests", n)
			}
			// Just under the limit still passes.
			if _, err := cs.Like(ctx, connect.NewRequest(&counterv1.LikeRequest{Item: item(strings.Repeat("y", 500))})); err != nil {
				t.Fatalf("small Like: %v", err)
			}
		})
	}
	for _, announced := range []bool{true, false} {
		e.backend.reset()
		body := `{"item":{"namespace":"article","id":"` + strings.Repeat("z", 4000) + `"}}`
		var r io.Reader = strings.NewReader(body)
		if !announced {
			r = io.MultiReader(r) // hides the length: chunked encoding
		}
		req, _ := http.NewRequest(http.MethodPost, e.url+counterv1connect.CounterServiceLikeProcedure, r)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token(t, "alice"))
		resp, err := e.http1.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || out["code"] != "resource_exhausted" || e.backend.hits.Load() != 0 {
			t.Fatalf("announced=%v: %d %v, backend hits %d", announced, resp.StatusCode, out, e.backend.hits.Load())
		}
	}
}

// TestUnknownProcedure: paths outside the table are Unimplemented in the
// request's protocol and never forwarded.
func TestUnknownProcedure(t *testing.T) {
	e := newEnv(t)
	paths := []string{
		"/highgopress.counter.v1.CounterService/Nope",
		"/highgopress.internal.v1.AdminService/Drop",
		"/grpc.health.v1.Health/Nope",
	}
	for _, p := range rpctest.Protocols {
		for _, path := range paths {
			t.Run(p.Name+path, func(t *testing.T) {
				e.backend.reset()
				c := connect.NewClient[counterv1.LikeRequest, counterv1.LikeResponse](e.client, e.url+path,
					append(p.Opts, withHeaders(bearer(token(t, "alice"))))...)
				_, err := c.CallUnary(context.Background(), connect.NewRequest(&counterv1.LikeRequest{Item: item("u")}))
				wantCode(t, err, connect.CodeUnimplemented, "")
				if n := e.backend.hits.Load(); n != 0 {
					t.Fatalf("backend received %d requests", n)
				}
			})
		}
	}
	resp, err := e.http1.Post(e.url+"/highgopress.counter.v1.CounterService/Nope", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("curl to unknown procedure: HTTP %d, want 404", resp.StatusCode)
	}
}

// TestBackendDown: a dead backend gives Unavailable; with a live instance
// next to a dead one, reads and writes still succeed (a refused connection
// proves the request was never delivered, so it is tried elsewhere).
func TestBackendDown(t *testing.T) {
	dead := "http://" + testenv.ClosedAddr(t)
	e := newEnv(t, func(c *gateway.Config) {
		u := *c.CounterURLs[0]
		u.Host = dead[len("http://"):]
		c.CounterURLs[0] = &u
	})
	ctx := context.Background()
	for _, p := range rpctest.Protocols {
		t.Run(p.Name, func(t *testing.T) {
			cs, _ := clients(e, e.client, p, withHeaders(bearer(token(t, "alice"))))
			_, err := cs.Like(ctx, connect.NewRequest(&counterv1.LikeRequest{Item: item("d")}))
			wantCode(t, err, connect.CodeUnavailable, "backend unavailable")
			_, err = cs.GetCounts(ctx, connect.NewRequest(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item("d")}}))
			wantCode(t, err, connect.CodeUnavailable, "backend unavailable")
		})
	}

	half := newEnv(t, func(c *gateway.Config) {
		u := *c.CounterURLs[0]
		u.Host = dead[len("http://"):]
		c.CounterURLs = append(c.CounterURLs, &u)
	})
	for _, p := range rpctest.Protocols {
		t.Run("one-of-two-dead/"+p.Name, func(t *testing.T) {
			cs, _ := clients(half, half.client, p, withHeaders(bearer(token(t, "alice"))))
			for i := range 6 {
				if _, err := cs.Like(ctx, connect.NewRequest(&counterv1.LikeRequest{Item: item("h")})); err != nil {
					t.Fatalf("Like %d: %v", i, err)
				}
				if _, err := cs.GetCounts(ctx, connect.NewRequest(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item("h")}})); err != nil {
					t.Fatalf("GetCounts %d: %v", i, err)
				}
			}
		})
	}
}

// TestDeadlines: client timeouts reach the backend untouched, and the
// gateway's own maximum ends calls that ask for more.
func TestDeadlines(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config) { c.MaxTimeout = 500 * time.Millisecond })
	// A fresh request per call: a client stores its timeout header in it.
	blocked := func() *connect.Request[counterv1.GetCountsRequest] {
		return connect.NewRequest(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item("block")}})
	}
	for _, p := range rpctest.Protocols {
		t.Run(p.Name, func(t *testing.T) {
			cs, _ := clients(e, e.client, p)
			e.backend.reset()
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			_, err := cs.GetCounts(ctx, blocked())
			wantCode(t, err, connect.CodeDeadlineExceeded, "")
			if got := <-e.backend.unblocked; got == nil || got.Error() == "never cancelled" {
				t.Fatalf("backend call ended with %v", got)
			}
			calls, _ := e.backend.recorded()
			if len(calls) != 1 || !calls[0].Deadline {
				t.Fatalf("backend calls %+v: want one with a deadline", calls)
			}

			// No client deadline: only the gateway's maximum can end the
			// call (the fake gives up after 10s with Internal).
			e.backend.reset()
			_, err = cs.GetCounts(context.Background(), blocked())
			wantCode(t, err, connect.CodeDeadlineExceeded, "deadline exceeded before the backend answered")
			if got := <-e.backend.unblocked; got == nil || got.Error() == "never cancelled" {
				t.Fatalf("backend call ended with %v", got)
			}
			calls, headers := e.backend.recorded()
			if len(calls) != 1 || headers[0].Get("Connect-Timeout-Ms") != "" || headers[0].Get("Grpc-Timeout") != "" {
				t.Fatalf("backend saw %+v with headers %v", calls, headers)
			}
		})
	}
}

// TestHealthAndReflection: health checks and reflection are answered by the
// gateway itself, so grpcurl works against the public port.
func TestHealthAndReflection(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, p := range rpctest.Protocols {
		t.Run(p.Name, func(t *testing.T) {
			hc := grpchealth.NewClient(e.client, e.url, p.Opts...)
			for _, svc := range []string{"", counterv1connect.CounterServiceName, counterv1connect.FollowServiceName} {
				st, err := hc.Check(ctx, &grpchealth.CheckRequest{Service: svc})
				if err != nil || st.Status != grpchealth.StatusServing {
					t.Fatalf("Check(%q) = %v, %v", svc, st, err)
				}
			}
		})
	}
	rc := grpcreflect.NewClient(e.client, e.url, connect.WithGRPC())
	stream := rc.NewStream(ctx)
	defer stream.Close()
	names, err := stream.ListServices()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []protoreflect.FullName{counterv1connect.CounterServiceName, counterv1connect.FollowServiceName} {
		if !slices.Contains(names, want) {
			t.Fatalf("reflection lists %v, missing %s", names, want)
		}
	}
	if e.backend.hits.Load() != 0 {
		t.Fatal("health or reflection was forwarded to the backend")
	}
}

// TestBuild starts the gateway the way cmd/gateway does, from variables.
func TestBuild(t *testing.T) {
	fb := newFakeBackend()
	backend := fb.serve(t)
	vars := map[string]string{
		"HGP_GATEWAY_COUNTER_URLS": backend,
		"HGP_IDENTITY_SECRET":      identitySecret,
		"HGP_JWT_HS256_SECRET":     hsSecret,
	}
	comp, err := gateway.Build(context.Background(), logging.Discard(), config.FromMap(vars))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = comp.Close() }()
	if comp.Name != "gateway" || comp.Addr != gateway.DefaultAddr || comp.Server == nil {
		t.Fatalf("component %+v", comp)
	}
	base, client := rpctest.Serve(t, comp.Server.Handler())
	cs := counterv1connect.NewCounterServiceClient(client, base, withHeaders(bearer(token(t, "alice"))))
	resp, err := cs.Like(context.Background(), connect.NewRequest(&counterv1.LikeRequest{Item: item("b")}))
	if err != nil || resp.Msg.Count != 1 {
		t.Fatalf("Like via Build = %v, %v", resp, err)
	}

	_, err = gateway.Build(context.Background(), logging.Discard(), config.FromMap(map[string]string{}))
	if err == nil {
		t.Fatal("Build with no configuration succeeded")
	}
	for _, name := range []string{"HGP_GATEWAY_COUNTER_URLS", "HGP_IDENTITY_SECRET", "HGP_JWT_HS256_SECRET"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
}

// TestAdmission: the admission hook sees the route and the authenticated
// subject, and a refusal stops the call before the backend.
func TestAdmission(t *testing.T) {
	fb := newFakeBackend()
	cfg := baseConfig(fb.serve(t))
	type seen struct {
		class   string
		subject string
	}
	seenc := make(chan seen, 16)
	g, err := gateway.New(logging.Discard(), cfg, gateway.WithAdmission(func(w http.ResponseWriter, r *http.Request, rt route.Route, subject string) bool {
		seenc <- seen{rt.Class.String(), subject}
		if subject == "limited" {
			w.WriteHeader(http.StatusTooManyRequests)
			return false
		}
		return true
	}))
	if err != nil {
		t.Fatal(err)
	}
	base, client := rpctest.Serve(t, g.Server().Handler())
	ctx := context.Background()
	ok := counterv1connect.NewCounterServiceClient(client, base, withHeaders(bearer(token(t, "alice"))))
	if _, err := ok.Like(ctx, connect.NewRequest(&counterv1.LikeRequest{Item: item("a")})); err != nil {
		t.Fatal(err)
	}
	if s := <-seenc; s != (seen{"write", "alice"}) {
		t.Fatalf("admission saw %+v", s)
	}
	anon := counterv1connect.NewCounterServiceClient(client, base)
	if _, err := anon.GetCounts(ctx, connect.NewRequest(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item("a")}})); err != nil {
		t.Fatal(err)
	}
	if s := <-seenc; s != (seen{"read", ""}) {
		t.Fatalf("admission saw %+v", s)
	}
	fb.reset()
	limited := counterv1connect.NewCounterServiceClient(client, base, withHeaders(bearer(token(t, "limited"))))
	_, err = limited.Like(ctx, connect.NewRequest(&counterv1.LikeRequest{Item: item("a")}))
	if err == nil || fb.hits.Load() != 0 {
		t.Fatalf("refused call: %v, backend hits %d", err, fb.hits.Load())
	}
}
