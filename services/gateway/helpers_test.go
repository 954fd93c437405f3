package gateway_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/identity"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/services/gateway"
	"github.com/highgopress/highgopress/services/gateway/auth"
)

const (
	identitySecret = "identity-secret-shared-by-gateway-and-backends"
	hsSecret       = "hs256-secret-for-tests-only-0123456789"
	issuer         = gateway.DefaultIssuer
	audience       = gateway.DefaultAudience
)

// call is one RPC the fake backend's handlers received.
type call struct {
	Procedure  string
	HTTPMethod string
	Actor      string
	HasActor   bool
	Deadline   bool
}

// fakeBackend is a test double of the counter service: it keeps likes,
// metrics and follows in memory and records who called what. Its handlers
// sit behind identity.NewInterceptor, exactly like the real backend.
type fakeBackend struct {
	counterv1connect.UnimplementedCounterServiceHandler
	counterv1connect.UnimplementedFollowServiceHandler

	hits atomic.Int64 // HTTP requests that reached the backend at all

	mu        sync.Mutex
	calls     []call
	headers   []http.Header // every request's headers, as received
	likes     map[string]map[string]bool
	metrics   map[string]int64
	following map[string]map[string]bool
	unblocked chan error // where a blocked call reports how it ended
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{
		likes:     map[string]map[string]bool{},
		metrics:   map[string]int64{},
		following: map[string]map[string]bool{},
		unblocked: make(chan error, 16),
	}
}

// serve runs the fake on loopback and returns its base URL.
func (f *fakeBackend) serve(t testing.TB) string {
	signer, err := identity.NewSigner([]byte(identitySecret))
	if err != nil {
		t.Fatal(err)
	}
	opts := connect.WithInterceptors(identity.NewInterceptor(signer))
	mux := http.NewServeMux()
	mux.Handle(counterv1connect.NewCounterServiceHandler(f, opts))
	mux.Handle(counterv1connect.NewFollowServiceHandler(f, opts))
	base, _ := rpctest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		f.mu.Lock()
		f.headers = append(f.headers, r.Header.Clone())
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	return base
}

func (f *fakeBackend) record(ctx context.Context, spec connect.Spec, method string) (string, bool) {
	actor, ok := identity.Actor(ctx)
	_, hasDeadline := ctx.Deadline()
	f.mu.Lock()
	f.calls = append(f.calls, call{Procedure: spec.Procedure, HTTPMethod: method, Actor: actor, HasActor: ok, Deadline: hasDeadline})
	f.mu.Unlock()
	return actor, ok
}

func (f *fakeBackend) reset() {
	f.hits.Store(0)
	f.mu.Lock()
	f.calls, f.headers = nil, nil
	f.mu.Unlock()
}

func (f *fakeBackend) recorded() ([]call, []http.Header) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...), append([]http.Header(nil), f.headers...)
}

func itemKey(it *counterv1.ItemRef) string { return it.GetNamespace() + "/" + it.GetId() }

func needActor(actor string, ok bool) error {
	if !ok {
		return connect.NewError(connect.CodeUnauthenticated, errors.New("fake: write without actor"))
	}
	return nil
}

func (f *fakeBackend) Like(ctx context.Context, req *connect.Request[counterv1.LikeRequest]) (*connect.Response[counterv1.LikeResponse], error) {
	actor, ok := f.record(ctx, req.Spec(), req.HTTPMethod())
	if err := needActor(actor, ok); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	k := itemKey(req.Msg.GetItem())
	if f.likes[k] == nil {
		f.likes[k] = map[string]bool{}
	}
	changed := !f.likes[k][actor]
	f.likes[k][actor] = true
	return connect.NewResponse(&counterv1.LikeResponse{Changed: changed, Count: int64(len(f.likes[k]))}), nil
}

func (f *fakeBackend) Unlike(ctx context.Context, req *connect.Request[counterv1.UnlikeRequest]) (*connect.Response[counterv1.UnlikeResponse], error) {
	actor, ok := f.record(ctx, req.Spec(), req.HTTPMethod())
	if err := needActor(actor, ok); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	k := itemKey(req.Msg.GetItem())
	changed := f.likes[k][actor]
	delete(f.likes[k], actor)
	return connect.NewResponse(&counterv1.UnlikeResponse{Changed: changed, Count: int64(len(f.likes[k]))}), nil
}

func (f *fakeBackend) Increment(ctx context.Context, req *connect.Request[counterv1.IncrementRequest]) (*connect.Response[counterv1.IncrementResponse], error) {
	actor, ok := f.record(ctx, req.Spec(), req.HTTPMethod())
	if err := needActor(actor, ok); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	k := itemKey(req.Msg.GetItem()) + "/" + req.Msg.GetMetric()
	f.metrics[k] += req.Msg.GetDelta()
	return connect.NewResponse(&counterv1.IncrementResponse{Value: f.metrics[k]}), nil
}

// GetCounts blocks until its context ends when asked for item id "block".
func (f *fakeBackend) GetCounts(ctx context.Context, req *connect.Request[counterv1.GetCountsRequest]) (*connect.Response[counterv1.GetCountsResponse], error) {
	actor, ok := f.record(ctx, req.Spec(), req.HTTPMethod())
	resp := &counterv1.GetCountsResponse{}
	for _, it := range req.Msg.GetItems() {
		if it.GetId() == "block" {
			select {
			case <-ctx.Done():
				f.unblocked <- ctx.Err()
				return nil, connect.NewError(connect.CodeDeadlineExceeded, ctx.Err())
			case <-time.After(10 * time.Second):
				f.unblocked <- errors.New("never cancelled")
				return nil, connect.NewError(connect.CodeInternal, errors.New("fake: not cancelled"))
			}
		}
		f.mu.Lock()
		k := itemKey(it)
		resp.Counts = append(resp.Counts, &counterv1.ItemCount{
			Item:        it,
			Likes:       int64(len(f.likes[k])),
			ViewerLiked: ok && f.likes[k][actor],
		})
		f.mu.Unlock()
	}
	return connect.NewResponse(resp), nil
}

func (f *fakeBackend) Follow(ctx context.Context, req *connect.Request[counterv1.FollowRequest]) (*connect.Response[counterv1.FollowResponse], error) {
	actor, ok := f.record(ctx, req.Spec(), req.HTTPMethod())
	if err := needActor(actor, ok); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.following[actor] == nil {
		f.following[actor] = map[string]bool{}
	}
	changed := !f.following[actor][req.Msg.GetUserId()]
	f.following[actor][req.Msg.GetUserId()] = true
	return connect.NewResponse(&counterv1.FollowResponse{Changed: changed, Following: int64(len(f.following[actor]))}), nil
}

func (f *fakeBackend) Unfollow(ctx context.Context, req *connect.Request[counterv1.UnfollowRequest]) (*connect.Response[counterv1.UnfollowResponse], error) {
	actor, ok := f.record(ctx, req.Spec(), req.HTTPMethod())
	if err := needActor(actor, ok); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	changed := f.following[actor][req.Msg.GetUserId()]
	delete(f.following[actor], req.Msg.GetUserId())
	return connect.NewResponse(&counterv1.UnfollowResponse{Changed: changed, Following: int64(len(f.following[actor]))}), nil
}

func (f *fakeBackend) GetUserStats(ctx context.Context, req *connect.Request[counterv1.GetUserStatsRequest]) (*connect.Response[counterv1.GetUserStatsResponse], error) {
	actor, ok := f.record(ctx, req.Spec(), req.HTTPMethod())
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &counterv1.GetUserStatsResponse{}
	for _, u := range req.Msg.GetUserIds() {
		resp.Stats = append(resp.Stats, &counterv1.UserStats{
			UserId:        u,
			Following:     int64(len(f.following[u])),
			ViewerFollows: ok && f.following[actor][u],
		})
	}
	return connect.NewResponse(resp), nil
}

// env is a gateway in front of a fake backend, both on loopback.
type env struct {
	url     string
	client  *http.Client // h2c
	http1   *http.Client // HTTP/1.1 only, like browsers and curl
	backend *fakeBackend
}

func baseConfig(backendURL string) gateway.Config {
	u, err := url.Parse(backendURL)
	if err != nil {
		panic(err)
	}
	return gateway.Config{
		Addr:         "127.0.0.1:0",
		CounterURLs:  []*url.URL{u},
		MaxBodyBytes: gateway.DefaultMaxBodyBytes,
		MaxTimeout:   gateway.DefaultMaxTimeout,
		Auth: auth.Config{
			HS256Secret: []byte(hsSecret),
			RS256Keys:   []*rsa.PublicKey{&rsaKeys(nil).trusted.PublicKey},
			Issuer:      issuer,
			Audience:    audience,
			Leeway:      gateway.DefaultLeeway,
		},
		IdentitySecret: []byte(identitySecret),
	}
}

func newEnv(t testing.TB, modify ...func(*gateway.Config)) *env {
	t.Helper()
	fb := newFakeBackend()
	cfg := baseConfig(fb.serve(t))
	for _, m := range modify {
		m(&cfg)
	}
	g, err := gateway.New(logging.Discard(), cfg)
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	t.Cleanup(func() { _ = g.Close() })
	base, client := rpctest.Serve(t, g.Server().Handler())
	h1 := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(h1.CloseIdleConnections)
	return &env{url: base, client: client, http1: h1, backend: fb}
}

type keys struct {
	trusted, other *rsa.PrivateKey
}

var (
	keysOnce sync.Once
	testKeys keys
)

// rsaKeys returns two RSA keys generated once per test binary: the one the
// gateway trusts and another.
func rsaKeys(t testing.TB) keys {
	keysOnce.Do(func() {
		var err error
		if testKeys.trusted, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if testKeys.other, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return testKeys
}

func token(t testing.TB, sub string) string {
	t.Helper()
	tok, err := auth.Issue([]byte(hsSecret), sub, time.Minute, issuer, audience)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// withHeaders is a client interceptor adding request headers.
func withHeaders(h http.Header) connect.ClientOption {
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			for k, vs := range h {
				req.Header()[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
			}
			return next(ctx, req)
		}
	}))
}

func bearer(tok string) http.Header {
	h := http.Header{}
	if tok != "" {
		h.Set("Authorization", "Bearer "+tok)
	}
	return h
}

func clients(e *env, hc *http.Client, p rpctest.Protocol, extra ...connect.ClientOption) (counterv1connect.CounterServiceClient, counterv1connect.FollowServiceClient) {
	opts := append(append([]connect.ClientOption(nil), p.Opts...), extra...)
	return counterv1connect.NewCounterServiceClient(hc, e.url, opts...), counterv1connect.NewFollowServiceClient(hc, e.url, opts...)
}

func item(id string) *counterv1.ItemRef { return &counterv1.ItemRef{Namespace: "article", Id: id} }

func wantCode(t testing.TB, err error, code connect.Code, msgPart string) {
	t.Helper()
	if got := connect.CodeOf(err); got != code {
		t.Fatalf("code = %v (err %v), want %v", got, err, code)
	}
	var ce *connect.Error
	if msgPart != "" && (!errors.As(err, &ce) || !strings.Contains(ce.Message(), msgPart)) {
		t.Fatalf("message %q does not contain %q", err, msgPart)
	}
}
