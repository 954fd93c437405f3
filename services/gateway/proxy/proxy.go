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
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/highgopress/highgopress/platform/identity"
	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/services/gateway/internal/rpcerror"
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

// ErrAttemptTimeout is what Backend.Done receives (wrapped) when an instance
// did not answer within the per-attempt timeout (WithAttemptTimeout): a
// stalled or frozen instance, which balancers eject like one that refused
// the connection. It does not match context.DeadlineExceeded: the
// request's own deadline is not the instance's fault, this is.
var ErrAttemptTimeout = errors.New("backend did not answer within the attempt timeout")

// ErrHeadersTooLarge reports a request whose header list (or trailers) is
// larger than the limit the proxy forwards (WithMaxHeaderBytes, as HTTP/2
// counts it): the client's error, answered 431 (Connect unary) or
// ResourceExhausted, never tried on a backend nor counted against one.
var ErrHeadersTooLarge = errors.New("request headers too large")

// DefaultMaxHeaderBytes is the default of WithMaxHeaderBytes: the
// MaxHeaderBytes of every HighGoPress server (platform/server), so a
// forwarded request always fits the header list size a backend advertises.
const DefaultMaxHeaderBytes = 16 << 10

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
	logger         *slog.Logger
	balancer       Balancer
	signer         *identity.Signer
	base           http.RoundTripper
	attempts       int
	attemptTimeout time.Duration
	maxHeaderBytes int
	errw           *connect.ErrorWriter
	rp             *httputil.ReverseProxy
}

// New returns a Proxy. The signer signs the identity header sent to
// backends.
func New(logger *slog.Logger, balancer Balancer, signer *identity.Signer, opts ...Option) *Proxy {
	o := options{attempts: 2, maxHeaderBytes: DefaultMaxHeaderBytes}
	for _, opt := range opts {
		opt(&o)
	}
	if o.transport == nil {
		o.transport = server.NewH2CTransport()
	}
	p := &Proxy{
		logger:         logger,
		balancer:       balancer,
		signer:         signer,
		base:           o.transport,
		attempts:       max(o.attempts, 1),
		attemptTimeout: o.attemptTimeout,
		maxHeaderBytes: o.maxHeaderBytes,
		errw:           connect.NewErrorWriter(),
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:       p.rewrite,
		Transport:     roundTripper{p},
		FlushInterval: -1, // server streams: every message goes out at once
		ErrorHandler:  p.handleError,
		BufferPool:    &bufferPool{},
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return p
}

type targetKey struct{}

// Forward sends r to an instance of t.Service and copies the answer to w.
// The caller has authenticated the request and bounded its body.
func (p *Proxy) Forward(w http.ResponseWriter, r *http.Request, t Target) {
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), targetKey{}, &t)))
}

// TargetOf returns the Target of a request being forwarded: a Balancer's
// Pick gets it from its context.
func TargetOf(ctx context.Context) (Target, bool) {
	t, ok := ctx.Value(targetKey{}).(*Target)
	if !ok {
		return Target{}, false
	}
	return *t, true
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
	if err := p.checkHeaderSize(req); err != nil {
		return nil, err
	}
	var lastErr error
	var lastHost string
	excluding, _ := p.balancer.(ExcludingBalancer)
	for attempt := 0; attempt < p.attempts; attempt++ {
		var (
			b    Backend
			err  error
			body io.ReadCloser
		)
		if attempt > 0 && req.Body != nil {
			// A retry needs the body again.
			if req.GetBody == nil {
				return nil, lastErr
			}
			if body, err = req.GetBody(); err != nil {
				return nil, lastErr
			}
		}
		if attempt > 0 && excluding != nil {
			b, err = excluding.PickExcluding(ctx, t.Service, lastHost)
		} else {
			b, err = p.balancer.Pick(ctx, t.Service)
		}
		if err != nil {
			closeBody(body)
			if lastErr != nil {
				return nil, lastErr
			}
			return nil, fmt.Errorf("pick %s: %w", t.Service, err)
		}
		if b.Done == nil {
			b.Done = func(error) {}
		}
		if attempt > 0 && b.URL.Host == lastHost {
			// The only instance left is the one that just failed.
			closeBody(body)
			b.Done(lastErr)
			return nil, lastErr
		}
		out := req.WithContext(ctx)
		u := *req.URL
		u.Scheme, u.Host = b.URL.Scheme, b.URL.Host
		out.URL = &u
		if body != nil {
			out.Body = body
		}
		resp, err := p.try(out, t, b)
		if err == nil {
			return resp, nil
		}
		if errors.Is(err, ErrHeadersTooLarge) {
			return nil, err
		}
		lastErr, lastHost = fmt.Errorf("%s instance %s: %w", t.Service, b.URL.Host, err), b.URL.Host
		if ctx.Err() != nil || !(t.Retry || IsDialError(err)) {
			break
		}
		p.logger.Warn("backend attempt failed, trying another instance", "service", t.Service, "instance", b.URL.Host, "err", err)
	}
	return nil, lastErr
}

// errAttemptTimer is the cancellation cause of an attempt whose timer fired.
var errAttemptTimer = errors.New("attempt timer fired")

// try sends one attempt to b and reports its outcome to b.Done. The attempt
// has its own context: cancelled when the per-attempt timeout passes
// (capped by the request's deadline, which it inherits) before the instance
// answered, that is before the response headers for a streaming RPC, and
// before the whole response body (up to MaxBufferedResponse) for a unary
// one, which is read here so that an instance that stalls or dies
// mid-response is an attempt failure (retried elsewhere for reads) rather
// than a broken answer.
func (p *Proxy) try(out *http.Request, t *Target, b Backend) (*http.Response, error) {
	ctx := out.Context()
	actx, cancel := context.WithCancelCause(ctx)
	var timer *time.Timer
	if p.attemptTimeout > 0 && !deadlineWithin(ctx, p.attemptTimeout) {
		timer = time.AfterFunc(p.attemptTimeout, func() { cancel(errAttemptTimer) })
	}
	// settle stops the timer and tells whether the attempt timed out (and
	// not the request).
	settle := func() bool {
		if timer != nil {
			timer.Stop()
		}
		return ctx.Err() == nil && errors.Is(context.Cause(actx), errAttemptTimer)
	}
	fail := func(err error) (*http.Response, error) {
		timedOut := settle()
		cancel(nil)
		switch {
		case timedOut:
			err = fmt.Errorf("%w (%s)", ErrAttemptTimeout, p.attemptTimeout)
		case isHeaderListTooLarge(err):
			// The instance advertised a smaller header list than ours:
			// the client's headers, not the instance's fault.
			b.Done(nil)
			return nil, fmt.Errorf("%w: %w", ErrHeadersTooLarge, err)
		}
		b.Done(err)
		return nil, err
	}

	resp, err := p.base.RoundTrip(out.WithContext(actx))
	if err != nil {
		return fail(err)
	}
	if !t.Unary || resp.Body == nil || resp.Body == http.NoBody {
		// Streams: the attempt timeout covered the wait for the headers;
		// the body flows under the request's own deadline.
		if settle() {
			resp.Body.Close()
			return fail(context.Canceled)
		}
		resp.Body = &doneBody{ReadCloser: cancelOnClose(resp.Body, cancel), done: b.Done}
		return resp, nil
	}
	buf, err := io.ReadAll(io.LimitReader(resp.Body, MaxBufferedResponse+1))
	if err != nil {
		resp.Body.Close()
		return fail(fmt.Errorf("reading the response: %w", err))
	}
	if len(buf) <= MaxBufferedResponse {
		// Complete (trailers included): the instance is done with.
		settle()
		resp.Body.Close()
		cancel(nil)
		b.Done(nil)
		resp.Body = io.NopCloser(bytes.NewReader(buf))
		return resp, nil
	}
	// Too large to hold: stream the rest under the request's deadline.
	if settle() {
		resp.Body.Close()
		return fail(context.Canceled)
	}
	rest := resp.Body
	resp.Body = &doneBody{ReadCloser: cancelOnClose(readCloser{Reader: io.MultiReader(bytes.NewReader(buf), rest), Closer: rest}, cancel), done: b.Done}
	return resp, nil
}

// deadlineWithin reports whether ctx ends within d anyway: the request's
// deadline then bounds the attempt (and its expiry is DeadlineExceeded, not
// the instance's fault).
func deadlineWithin(ctx context.Context, d time.Duration) bool {
	deadline, ok := ctx.Deadline()
	return ok && time.Until(deadline) <= d
}

// cancelOnClose ends an attempt's context once its response body is closed.
func cancelOnClose(rc io.ReadCloser, cancel context.CancelCauseFunc) io.ReadCloser {
	return readCloser{Reader: rc, Closer: closerFunc(func() error {
		err := rc.Close()
		cancel(nil)
		return err
	})}
}

func closeBody(rc io.ReadCloser) {
	if rc != nil {
		_ = rc.Close()
	}
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// isHeaderListTooLarge reports the HTTP/2 transport's refusal to send a
// header list larger than the peer's SETTINGS_MAX_HEADER_LIST_SIZE.
func isHeaderListTooLarge(err error) bool {
	return err != nil && strings.Contains(err.Error(), "header list larger than peer's advertised limit")
}

// checkHeaderSize refuses a request whose header list or trailers, counted
// as HTTP/2 does (name + value + 32 bytes per field, pseudo-headers
// included), exceed the limit: such a request would be refused by every
// instance, so it is the client's error.
func (p *Proxy) checkHeaderSize(req *http.Request) error {
	const overhead = 32
	// Pseudo-headers; :authority is the instance's host:port, not known
	// yet ("255.255.255.255:65535" at most for our instances).
	n := len(":method") + len(req.Method) + len(":scheme") + len("https") +
		len(":authority") + len("255.255.255.255:65535") + len(":path") + len(req.URL.RequestURI()) + 4*overhead
	if req.ContentLength > 0 {
		n += len("content-length") + len(strconv.FormatInt(req.ContentLength, 10)) + overhead
	}
	for k, vs := range req.Header {
		for _, v := range vs {
			n += len(k) + len(v) + overhead
		}
	}
	if n > p.maxHeaderBytes {
		return fmt.Errorf("%w: %d bytes of request headers, the limit is %d", ErrHeadersTooLarge, n, p.maxHeaderBytes)
	}
	n = 0
	for k, vs := range req.Trailer {
		for _, v := range vs {
			n += len(k) + len(v) + overhead
		}
	}
	if n > p.maxHeaderBytes {
		return fmt.Errorf("%w: %d bytes of request trailers, the limit is %d", ErrHeadersTooLarge, n, p.maxHeaderBytes)
	}
	return nil
}

// IsDialError reports whether err says a connection could not be opened, so
// the request was certainly not delivered.
func IsDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (p *Proxy) handleError(w http.ResponseWriter, r *http.Request, err error) {
	code, msg, status := connect.CodeUnavailable, "backend unavailable", 0
	var tooBig *http.MaxBytesError
	switch ctxErr := r.Context().Err(); {
	case errors.As(err, &tooBig):
		code, msg = connect.CodeResourceExhausted, fmt.Sprintf("request body exceeds the limit of %d bytes", tooBig.Limit)
	case errors.Is(err, ErrHeadersTooLarge):
		code, msg, status = connect.CodeResourceExhausted, fmt.Sprintf("request headers exceed the limit of %d bytes", p.maxHeaderBytes), http.StatusRequestHeaderFieldsTooLarge
	case errors.Is(ctxErr, context.DeadlineExceeded):
		code, msg = connect.CodeDeadlineExceeded, "deadline exceeded before the backend answered"
	case errors.Is(ctxErr, context.Canceled):
		code, msg = connect.CodeCanceled, "request canceled"
	case errors.Is(err, ErrNoBackend):
		msg = "no backend available"
		if t, ok := r.Context().Value(targetKey{}).(*Target); ok && t.Service != "" {
			msg = "no backend available: no healthy " + t.Service + " instance"
		}
	case errors.Is(err, ErrAttemptTimeout):
		msg = fmt.Sprintf("backend did not answer within %s", p.attemptTimeout)
	}
	if code == connect.CodeUnavailable {
		p.logger.Warn("forwarding failed", "path", r.URL.Path, "err", err)
	}
	if werr := rpcerror.Write(w, r, p.errw, code, msg, status); werr != nil {
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
