// Package gateway is HighGoPress's only public door. It authenticates end
// users (JWT bearer tokens), routes each public RPC to a backend instance
// and forwards it without decoding, carrying the acting user in the signed
// internal identity header. Connect, gRPC and gRPC-Web are served from one
// port over HTTP/1.1 and h2c, with gRPC health checks and server reflection
// answered locally.
package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"

	// The gateway serves reflection for these services: importing the
	// generated packages registers their descriptors.
	_ "github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/bootstrap"
	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/identity"
	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/services/gateway/auth"
	"github.com/highgopress/highgopress/services/gateway/proxy"
	"github.com/highgopress/highgopress/services/gateway/route"
)

// Limits of the public server.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 30 * time.Second
	IdleTimeout       = 120 * time.Second
	MaxHeaderBytes    = 16 << 10
)

// Gateway is the public handler: route table, authentication, body and
// deadline limits, forwarding.
type Gateway struct {
	logger     *slog.Logger
	routes     *route.Table
	verifier   *auth.Verifier
	proxy      *proxy.Proxy
	transport  *http.Transport
	errw       *connect.ErrorWriter
	maxBody    int64
	maxTimeout time.Duration
	admit      Admission
	server     *server.Server
}

// New returns a Gateway for cfg.
func New(logger *slog.Logger, cfg Config, opts ...Option) (*Gateway, error) {
	o := options{routes: route.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	verifier, err := auth.NewVerifier(cfg.Auth, o.authOpts...)
	if err != nil {
		return nil, fmt.Errorf("token verifier: %w", err)
	}
	signer, err := identity.NewSigner(cfg.IdentitySecret)
	if err != nil {
		return nil, fmt.Errorf("identity signer: %w", err)
	}
	if cfg.MaxBodyBytes <= 0 || cfg.MaxTimeout <= 0 {
		return nil, errors.New("max body bytes and max timeout must be positive")
	}
	balancer := o.balancer
	if balancer == nil {
		static := map[string][]*url.URL{}
		for _, r := range o.routes.Routes() {
			if r.Backend != route.CounterBackend {
				return nil, fmt.Errorf("route %s: no static instances for backend %q", r.Procedure, r.Backend)
			}
			static[r.Backend] = cfg.CounterURLs
		}
		if balancer, err = proxy.NewRoundRobin(static); err != nil {
			return nil, fmt.Errorf("static balancer: %w", err)
		}
	}
	transport := server.NewH2CTransport()
	g := &Gateway{
		logger:     logger,
		routes:     o.routes,
		verifier:   verifier,
		transport:  transport,
		errw:       connect.NewErrorWriter(),
		maxBody:    cfg.MaxBodyBytes,
		maxTimeout: cfg.MaxTimeout,
		admit:      o.admit,
	}
	g.proxy = proxy.New(logger, balancer, signer, append([]proxy.Option{proxy.WithTransport(transport)}, o.proxyOpts...)...)
	sopts := append([]server.Option{
		server.WithReadHeaderTimeout(ReadHeaderTimeout),
		server.WithReadTimeout(ReadTimeout),
		server.WithIdleTimeout(IdleTimeout),
		server.WithMaxHeaderBytes(MaxHeaderBytes),
	}, o.serverOpts...)
	sopts = append(sopts, server.WithMiddleware(func(h http.Handler) http.Handler { return withCORS(cfg.CORSOrigins, h) }))
	g.server = server.New(logger, o.routes.Services(), sopts...)
	g.server.Handle("/", g)
	return g, nil
}

// Server returns the public server: the gateway's routes plus local health
// checks and reflection of the public services.
func (g *Gateway) Server() *server.Server { return g.server }

// Close releases idle connections to backends.
func (g *Gateway) Close() error {
	g.transport.CloseIdleConnections()
	return nil
}

// Build is the gateway's bootstrap.BuildFunc.
func Build(ctx context.Context, logger *slog.Logger, cfg *config.Reader) (*bootstrap.Component, error) {
	return BuildWith()(ctx, logger, cfg)
}

// BuildWith returns a BuildFunc applying opts; with WithBalancer,
// HGP_GATEWAY_COUNTER_URLS becomes optional.
func BuildWith(opts ...Option) bootstrap.BuildFunc {
	return func(_ context.Context, logger *slog.Logger, r *config.Reader) (*bootstrap.Component, error) {
		var o options
		for _, opt := range opts {
			opt(&o)
		}
		cfg := ReadConfig(r, o.balancer == nil)
		if err := r.Err(); err != nil {
			return nil, err
		}
		g, err := New(logger, cfg, opts...)
		if err != nil {
			return nil, err
		}
		return &bootstrap.Component{Name: "gateway", Addr: cfg.Addr, Server: g.Server(), Close: g.Close}, nil
	}
}

// ServeHTTP handles the routed procedures: everything the server does not
// answer locally.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, ok := g.routes.Lookup(r.URL.Path)
	if !ok {
		g.notFound(w, r)
		return
	}
	switch {
	case r.Method == http.MethodPost:
	case r.Method == http.MethodGet && rt.Class == route.Read:
	default:
		// As connect-go handlers answer a method they do not allow.
		if rt.Class == route.Read {
			w.Header().Set("Allow", "GET, POST")
		} else {
			w.Header().Set("Allow", "POST")
		}
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}

	actor, err := g.authenticate(r, rt)
	if err != nil {
		g.logger.Debug("unauthenticated", "path", r.URL.Path, "err", err)
		g.fail(w, r, connect.CodeUnauthenticated, auth.Reason(err).Error())
		return
	}

	if g.admit != nil && !g.admit(w, r, rt, actor) {
		return
	}

	if r.ContentLength > g.maxBody {
		g.fail(w, r, connect.CodeResourceExhausted, fmt.Sprintf("request body of %d bytes exceeds the limit of %d bytes", r.ContentLength, g.maxBody))
		return
	}
	body, err := g.readBody(w, r)
	if err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			g.fail(w, r, connect.CodeResourceExhausted, fmt.Sprintf("request body exceeds the limit of %d bytes", g.maxBody))
		case r.Context().Err() != nil:
			g.fail(w, r, connect.CodeCanceled, "request canceled")
		default:
			g.fail(w, r, connect.CodeInvalidArgument, "could not read the request body")
		}
		return
	}

	timeout := g.maxTimeout
	if d, ok := clientTimeout(r.Header); ok && d < timeout {
		timeout = d
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	out := r.WithContext(ctx)
	if body != nil {
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.ContentLength = int64(len(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	} else {
		out.Body = http.NoBody
		out.ContentLength = 0
		out.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
	}
	g.proxy.Forward(w, out, proxy.Target{Service: rt.Backend, Retry: rt.Class == route.Read, Actor: actor})
}

// authenticate returns the token's subject, or "" for an anonymous read.
func (g *Gateway) authenticate(r *http.Request, rt route.Route) (string, error) {
	tok, present, err := auth.BearerToken(r.Header)
	if err != nil {
		return "", err
	}
	if !present {
		if rt.Class == route.Write {
			return "", auth.ErrMissing
		}
		return "", nil
	}
	claims, err := g.verifier.Verify(tok)
	if err != nil {
		return "", err
	}
	return claims.Subject, nil
}

// readBody reads the whole request body, at most maxBody bytes, so an
// oversized request is refused before any backend sees it and a failed read
// can be retried elsewhere. It returns nil for an empty body.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil, nil
	}
	body := http.MaxBytesReader(w, r.Body, g.maxBody)
	if r.ContentLength > 0 {
		buf := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(body, buf); err != nil {
			return nil, fmt.Errorf("read request body: %w", err)
		}
		return buf, nil
	}
	buf, err := io.ReadAll(body)
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	if len(buf) == 0 {
		return nil, nil
	}
	return buf, nil
}

// notFound answers a path outside the table with Unimplemented: for Connect
// unary (and anything unrecognised, such as a browser) as HTTP 404 with a
// Connect JSON error, the way a connect-go server answers an unknown route;
// for gRPC, gRPC-Web and Connect streaming in their own framing.
func (g *Gateway) notFound(w http.ResponseWriter, r *http.Request) {
	msg := "unknown procedure " + quote(r.URL.Path)
	ct := r.Header.Get("Content-Type")
	if r.Method == http.MethodPost && (strings.HasPrefix(ct, "application/grpc") || strings.HasPrefix(ct, "application/connect+")) {
		g.fail(w, r, connect.CodeUnimplemented, msg)
		return
	}
	body, err := json.Marshal(struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{connect.CodeUnimplemented.String(), msg})
	if err != nil {
		g.fail(w, r, connect.CodeUnimplemented, msg)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write(body)
}

func (g *Gateway) fail(w http.ResponseWriter, r *http.Request, code connect.Code, msg string) {
	if err := g.errw.Write(w, r, connect.NewError(code, errors.New(msg))); err != nil {
		g.logger.Debug("writing error response", "err", err)
	}
}

// quote renders client input safely in an error message.
func quote(s string) string {
	const maxLen = 128
	if len(s) > maxLen {
		s = s[:maxLen] + "..."
	}
	return strconv.Quote(s)
}
