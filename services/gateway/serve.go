package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"github.com/highgopress/highgopress/services/gateway/auth"
	"github.com/highgopress/highgopress/services/gateway/internal/rpcerror"
	"github.com/highgopress/highgopress/services/gateway/proxy"
	"github.com/highgopress/highgopress/services/gateway/route"
)

// authResult is the outcome of authenticating a routed request, computed
// once by authMiddleware so the rate limiter can spend the user's budget
// together with the IP's, and reused by ServeHTTP.
type authResult struct {
	subject string
	err     error
}

type authKey struct{}

// authMiddleware verifies the bearer token of routed requests and records
// the outcome in the request context. It rejects nothing: ServeHTTP does,
// after the rate limiter ran (so failed authentications spend the client's
// IP budget too).
func (g *Gateway) authMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt, ok := g.routes.Lookup(procedureOf(r))
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		subject, err := g.authenticate(r, rt)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), authKey{}, &authResult{subject, err})))
	})
}

// verifiedSubject is the authenticated user of r, or "" (anonymous, or
// authentication failed): never an unverified claim.
func verifiedSubject(r *http.Request) string {
	if res, ok := r.Context().Value(authKey{}).(*authResult); ok && res.err == nil {
		return res.subject
	}
	return ""
}

// ServeHTTP handles the routed procedures: everything the server does not
// answer locally.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, ok := g.routes.Lookup(procedureOf(r))
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

	if msg, ok := g.unconfigured[rt.Backend]; ok {
		g.fail(w, r, connect.CodeUnimplemented, msg)
		return
	}

	var (
		actor string
		err   error
	)
	if res, ok := r.Context().Value(authKey{}).(*authResult); ok {
		actor, err = res.subject, res.err
	} else {
		actor, err = g.authenticate(r, rt)
	}
	if err != nil {
		g.logger.Debug("unauthenticated", "path", procedureOf(r), "err", err)
		g.fail(w, r, connect.CodeUnauthenticated, auth.Reason(err).Error())
		return
	}

	if rt.Class == route.Write && g.readOnly.Load() {
		g.fail(w, r, connect.CodeUnavailable, "the service is in read-only mode for maintenance: writes are refused for now, reads work; retry later")
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
		case isTimeout(err):
			// The server's read timeout passed before the whole body
			// arrived (a slow or stalled client): 408, never the
			// non-standard 499 of a cancelled call. Over HTTP/1.1 the
			// connection cannot carry another request.
			if r.ProtoMajor == 1 {
				w.Header().Set("Connection", "close")
			}
			g.failStatus(w, r, connect.CodeDeadlineExceeded, fmt.Sprintf("request body not received within the read timeout (%s)", g.readTimeout), http.StatusRequestTimeout)
		case errors.Is(err, errInvalidBase64):
			g.fail(w, r, connect.CodeInvalidArgument, errInvalidBase64.Error())
		case r.Context().Err() != nil:
			g.fail(w, r, connect.CodeCanceled, "request canceled")
		default:
			g.fail(w, r, connect.CodeInvalidArgument, "could not read the request body")
		}
		return
	}
	if code, msg, ok := checkCompressed(r, body, g.maxMsg); !ok {
		g.fail(w, r, code, msg)
		return
	}
	if r.Method == http.MethodGet {
		if code, msg, ok := checkConnectGET(r, g.maxMsg); !ok {
			g.fail(w, r, code, msg)
			return
		}
	}

	// Unary calls are capped by HGP_GATEWAY_MAX_TIMEOUT; server streams
	// by HGP_GATEWAY_MAX_STREAM_DURATION (none by default); the client's
	// own timeout applies to both.
	timeout := g.maxTimeout
	if rt.Streaming {
		timeout = g.maxStream
		// The request is read: the server's read timeout must not end the
		// stream (net/http lifts an HTTP/1.1 connection's read deadline
		// once the body is read; this keeps it explicit for every
		// protocol).
		if err := http.NewResponseController(w).SetReadDeadline(time.Time{}); err != nil {
			g.logger.Debug("clearing the read deadline of a stream", "err", err)
		}
	}
	if d, ok := clientTimeout(r.Header); ok && (timeout <= 0 || d < timeout) {
		timeout = d
	}
	var (
		ctx    context.Context
		cancel context.CancelFunc
	)
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(r.Context(), timeout)
	} else {
		ctx, cancel = context.WithCancel(r.Context())
	}
	defer cancel()
	if rt.Streaming {
		// Shutdown ends streams (endStreams).
		defer context.AfterFunc(g.streamsCtx, cancel)()
	}
	out := r.WithContext(ctx)
	// Forward exactly the path that was routed (procedureOf).
	u := *r.URL
	u.Path, u.RawPath = rt.Procedure, ""
	out.URL = &u
	if body != nil {
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.ContentLength = int64(len(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	} else {
		out.Body = http.NoBody
		out.ContentLength = 0
		out.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
	}
	g.proxy.Forward(w, out, proxy.Target{Service: rt.Backend, Retry: rt.Class == route.Read, Actor: actor, Unary: !rt.Streaming})
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

// initialBodyBuffer is the most the gateway reserves for a request body
// before its bytes arrive.
const initialBodyBuffer = 32 << 10

// readBody reads the whole request body, at most maxBody bytes, so an
// oversized request is refused before any backend sees it and a failed read
// can be retried elsewhere. It returns nil for an empty body.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil, nil
	}
	body := http.MaxBytesReader(w, r.Body, g.maxBody)
	// Memory grows with the bytes that actually arrive: a client announcing
	// a large Content-Length and then sending slowly pins at most
	// initialBodyBuffer until its data comes, so slow clients cannot
	// exhaust the gateway's memory.
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(min(r.ContentLength, initialBodyBuffer)))
	}
	if _, err := buf.ReadFrom(body); err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	if r.ContentLength > 0 && int64(buf.Len()) != r.ContentLength {
		return nil, fmt.Errorf("read request body: %w", io.ErrUnexpectedEOF)
	}
	if buf.Len() == 0 {
		return nil, nil
	}
	return buf.Bytes(), nil
}

// notFound answers a path outside the table with Unimplemented: for Connect
// unary (and anything unrecognised, such as a browser) as HTTP 404 with a
// Connect JSON error, the way a connect-go server answers an unknown route;
// for gRPC, gRPC-Web and Connect streaming in their own framing.
func (g *Gateway) notFound(w http.ResponseWriter, r *http.Request) {
	g.failStatus(w, r, connect.CodeUnimplemented, "unknown procedure "+quote(procedureOf(r)), http.StatusNotFound)
}

func (g *Gateway) fail(w http.ResponseWriter, r *http.Request, code connect.Code, msg string) {
	g.failStatus(w, r, code, msg, 0)
}

// failStatus is fail with the HTTP status of a Connect unary (or non-RPC)
// answer chosen by the caller (0: the one connect-go derives from code).
func (g *Gateway) failStatus(w http.ResponseWriter, r *http.Request, code connect.Code, msg string, status int) {
	if err := rpcerror.Write(w, r, g.errw, code, msg, status); err != nil {
		g.logger.Debug("writing error response", "err", err)
	}
}

// isTimeout reports whether reading the request failed because the
// server's read deadline passed (HTTP/1.1: the connection's deadline;
// HTTP/2: the stream's read timer).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// quote renders client input safely in an error message.
func quote(s string) string {
	const maxLen = 128
	if len(s) > maxLen {
		s = s[:maxLen] + "..."
	}
	return strconv.Quote(s)
}
