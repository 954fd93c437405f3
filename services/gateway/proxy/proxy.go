// Package proxy forwards RPCs from the gateway to backend instances without
// decoding them: request and response bodies, headers and trailers pass
// through unchanged (gRPC, gRPC-Web and Connect alike), except for the
// identity and credential headers, which the proxy controls.
package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"

	"connectrpc.com/connect"

	"github.com/highgopress/highgopress/platform/identity"
	"github.com/highgopress/highgopress/platform/server"
)

// Backend is one instance chosen by a Balancer.
type Backend struct {
	// URL is the instance's base URL (scheme and host; h2c over http).
	URL *url.URL
	// Done, when not nil, is called exactly once per Pick, when the attempt
	// ends: after the response body was consumed, with nil (whatever the
	// RPC status) or the error that broke the body off; or at once with the
	// transport error when the backend could not be reached (or was not
	// tried because it had just failed). Balancers use it for passive
	// health checks and in-flight accounting.
	Done func(err error)
}

// Balancer chooses a backend instance for a backend service. It is how
// service discovery plugs into the gateway: the static round-robin
// implementation of this package, or one backed by a catalog. Pick must be
// safe for concurrent use and return ErrNoBackend (wrapped) when there is no
// instance to use.
type Balancer interface {
	Pick(ctx context.Context, service string) (Backend, error)
}

// ExcludingBalancer is a Balancer that can avoid one instance: the proxy
// uses it to send a retry to another instance than the one that just
// failed. Balancers without it are simply asked to Pick again.
type ExcludingBalancer interface {
	Balancer
	// PickExcluding is Pick avoiding the instance at hostPort when another
	// one is available (it may return that instance when it is the only one).
	PickExcluding(ctx context.Context, service, hostPort string) (Backend, error)
}

// ErrNoBackend reports that a Balancer has no instance for a service.
var ErrNoBackend = errors.New("no backend available")

// Target says where and as whom one request is forwarded.
type Target struct {
	// Service is the backend service passed to the Balancer.
	Service string
	// Retry allows sending the request to another instance after a
	// transport error (set for reads: they have no side effects). Writes
	// are retried only when the connection could not be opened, so the
	// request certainly never reached a backend.
	Retry bool
	// Actor is the authenticated user; empty for anonymous calls.
	Actor string
	// Unary marks a unary RPC: the backend's response body is read
	// completely (up to MaxBufferedResponse) before anything is sent to
	// the client, so an instance that dies mid-response gives the client a
	// clean Unavailable in its protocol instead of a broken stream. Larger
	// responses, and those of streaming RPCs, are streamed as they arrive.
	Unary bool
}

// MaxBufferedResponse bounds the response body of a unary RPC the proxy
// holds before answering (see Target.Unary).
const MaxBufferedResponse = 4 << 20

// Proxy forwards requests to the instance a Balancer picks.
type Proxy struct {
	logger   *slog.Logger
	balancer Balancer
	signer   *identity.Signer
	base     http.RoundTripper
	attempts int
	errw     *connect.ErrorWriter
	rp       *httputil.ReverseProxy
}

// New returns a Proxy. The signer signs the identity header sent to
// backends.
func New(logger *slog.Logger, balancer Balancer, signer *identity.Signer, opts ...Option) *Proxy {
	o := options{attempts: 2}
	for _, opt := range opts {
		opt(&o)
	}
	if o.transport == nil {
		o.transport = server.NewH2CTransport()
	}
	p := &Proxy{
		logger:   logger,
		balancer: balancer,
		signer:   signer,
		base:     o.transport,
		attempts: max(o.attempts, 1),
		errw:     connect.NewErrorWriter(),
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      roundTripper{p},
		ModifyResponse: p.bufferUnary,
		FlushInterval:  -1, // server streams: every message goes out at once
		ErrorHandler:   p.handleError,
		BufferPool:     &bufferPool{},
		ErrorLog:       slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return p
}

type targetKey struct{}

// Forward sends r to an instance of t.Service and copies the answer to w.
// The caller has authenticated the request and bounded its body.
func (p *Proxy) Forward(w http.ResponseWriter, r *http.Request, t Target) {
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), targetKey{}, &t)))
}

// stripped are request headers never forwarded: the identity header is set
// by the proxy alone, and backends must not see end-user credentials.
var stripped = []string{identity.Header, "Authorization", "Cookie"}

func strip(h http.Header) {
	for k := range h {
		for _, s := range stripped {
			if strings.EqualFold(k, s) {
				delete(h, k)
			}
		}
	}
}

func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	t, _ := pr.In.Context().Value(targetKey{}).(*Target)
	out := pr.Out
	strip(out.Header)
	strip(out.Trailer)
	// RPCs never switch protocols.
	out.Header.Del("Upgrade")
	out.Header.Del("Connection")
	if t != nil && t.Actor != "" {
		out.Header.Set(identity.Header, p.signer.Sign(t.Actor, out.URL.Path))
	}
	pr.SetXForwarded()
	// The round tripper puts the picked instance here.
	out.URL.Scheme = "http"
	out.URL.Host = "backend.invalid"
	out.Host = ""
}

// bufferUnary reads a unary RPC's response before the client sees any of
// it. A read error goes to handleError (Unavailable); the balancer learns it
// through Done when the body is closed.
func (p *Proxy) bufferUnary(resp *http.Response) error {
	t, _ := resp.Request.Context().Value(targetKey{}).(*Target)
	if t == nil || !t.Unary || resp.Body == nil || resp.Body == http.NoBody {
		return nil
	}
	buf, err := io.ReadAll(io.LimitReader(resp.Body, MaxBufferedResponse+1))
	if err != nil {
		return fmt.Errorf("%s: reading the response: %w", t.Service, err)
	}
	var r io.Reader = bytes.NewReader(buf)
	if len(buf) > MaxBufferedResponse {
		r = io.MultiReader(r, resp.Body) // too large to hold: stream the rest
	}
	resp.Body = readCloser{Reader: r, Closer: resp.Body}
	return nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// roundTripper picks an instance per attempt and retries where safe.
type roundTripper struct{ p *Proxy }

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	p := rt.p
	ctx := req.Context()
	t, _ := ctx.Value(targetKey{}).(*Target)
	if t == nil {
		return nil, errors.New("proxy: request without target")
	}
	var lastErr error
	var lastHost string
	excluding, _ := p.balancer.(ExcludingBalancer)
	for attempt := 0; attempt < p.attempts; attempt++ {
		var (
			b   Backend
			err error
		)
		if attempt > 0 && excluding != nil {
			b, err = excluding.PickExcluding(ctx, t.Service, lastHost)
		} else {
			b, err = p.balancer.Pick(ctx, t.Service)
		}
		if err != nil {
			if lastErr != nil {
				return nil, lastErr
			}
			return nil, fmt.Errorf("pick %s: %w", t.Service, err)
		}
		if attempt > 0 && b.URL.Host == lastHost {
			// The only instance left is the one that just failed.
			if b.Done != nil {
				b.Done(lastErr)
			}
			return nil, lastErr
		}
		out := req.WithContext(ctx)
		u := *req.URL
		u.Scheme, u.Host = b.URL.Scheme, b.URL.Host
		out.URL = &u
		if attempt > 0 && req.Body != nil {
			if req.GetBody == nil {
				return nil, lastErr
			}
			if out.Body, err = req.GetBody(); err != nil {
				return nil, lastErr
			}
		}
		resp, err := p.base.RoundTrip(out)
		if err == nil {
			if b.Done != nil {
				resp.Body = &doneBody{ReadCloser: resp.Body, done: b.Done}
			}
			return resp, nil
		}
		if b.Done != nil {
			b.Done(err)
		}
		lastErr, lastHost = fmt.Errorf("%s instance %s: %w", t.Service, b.URL.Host, err), b.URL.Host
		if ctx.Err() != nil || !(t.Retry || IsDialError(err)) {
			break
		}
		p.logger.Warn("backend attempt failed, trying another instance", "service", t.Service, "instance", b.URL.Host, "err", err)
	}
	return nil, lastErr
}

// IsDialError reports whether err says a connection could not be opened, so
// the request was certainly not delivered.
func IsDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (p *Proxy) handleError(w http.ResponseWriter, r *http.Request, err error) {
	code, msg := connect.CodeUnavailable, "backend unavailable"
	var tooBig *http.MaxBytesError
	switch ctxErr := r.Context().Err(); {
	case errors.As(err, &tooBig):
		code, msg = connect.CodeResourceExhausted, fmt.Sprintf("request body exceeds the limit of %d bytes", tooBig.Limit)
	case errors.Is(ctxErr, context.DeadlineExceeded):
		code, msg = connect.CodeDeadlineExceeded, "deadline exceeded before the backend answered"
	case errors.Is(ctxErr, context.Canceled):
		code, msg = connect.CodeCanceled, "request canceled"
	case errors.Is(err, ErrNoBackend):
		msg = "no backend available"
	}
	if code == connect.CodeUnavailable {
		p.logger.Warn("forwarding failed", "path", r.URL.Path, "err", err)
	}
	if werr := p.errw.Write(w, r, connect.NewError(code, errors.New(msg))); werr != nil {
		p.logger.Debug("writing error response", "err", werr)
	}
}

// BalancerFunc adapts a function to Balancer, for example to wrap a
// service-discovery balancer with its own Backend type.
type BalancerFunc func(ctx context.Context, service string) (Backend, error)

// Pick implements Balancer.
func (f BalancerFunc) Pick(ctx context.Context, service string) (Backend, error) {
	return f(ctx, service)
}

// bufferPool recycles the response copy buffers (32 KiB each, otherwise
// allocated per request).
type bufferPool struct{ pool sync.Pool }

func (b *bufferPool) Get() []byte {
	if buf, ok := b.pool.Get().(*[]byte); ok {
		return *buf
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.pool.Put(&buf) }

// doneBody reports the end of a response to the balancer when the proxy
// closes it, with the first read error other than EOF.
type doneBody struct {
	io.ReadCloser
	done func(error)
	err  error
	once sync.Once
}

func (d *doneBody) Read(p []byte) (int, error) {
	n, err := d.ReadCloser.Read(p)
	if err != nil && err != io.EOF && d.err == nil {
		d.err = err
	}
	return n, err
}

func (d *doneBody) Close() error {
	err := d.ReadCloser.Close()
	d.once.Do(func() { d.done(d.err) })
	return err
}
