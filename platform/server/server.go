// Package server runs one service's HTTP server: Connect, gRPC and gRPC-Web
// from a single h2c handler, with gRPC health checking, server reflection,
// explicit timeouts and graceful shutdown. Every server with services
// measures and traces its RPCs (platform/telemetry.Middleware, outermost).
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"

	"github.com/highgopress/highgopress/platform/telemetry"
)

type httpHandler = http.Handler

// Server is a mux plus the standard endpoints every service carries.
type Server struct {
	logger   *slog.Logger
	opts     options
	mux      *http.ServeMux
	health   *grpchealth.StaticChecker
	services []string
	// rpc is the RED metrics and tracing middleware (servers with services).
	rpc func(http.Handler) http.Handler
}

// New returns a Server that reports services as healthy and reflects them.
// Services are fully-qualified protobuf service names.
func New(logger *slog.Logger, services []string, opts ...Option) *Server {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	s := &Server{
		logger:   logger,
		opts:     o,
		mux:      http.NewServeMux(),
		health:   grpchealth.NewStaticChecker(services...),
		services: services,
	}
	s.mux.Handle(grpchealth.NewHandler(s.health))
	if len(services) > 0 {
		s.rpc = telemetry.Middleware(services)
		reflector := grpcreflect.NewStaticReflector(services...)
		s.mux.Handle(grpcreflect.NewHandlerV1(reflector))
		s.mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))
	}
	return s
}

// Handle mounts a handler, typically a generated (path, handler) pair.
func (s *Server) Handle(path string, h http.Handler) { s.mux.Handle(path, h) }

// Handler returns the complete handler with middleware applied.
func (s *Server) Handler() http.Handler {
	var h http.Handler = s.mux
	for _, w := range s.opts.wrap {
		h = w(h)
	}
	if s.rpc != nil {
		h = s.rpc(h) // outermost: rejections by any middleware are measured too
	}
	return h
}

// SetServing marks every service serving or not serving in health checks.
func (s *Server) SetServing(serving bool) {
	st := grpchealth.StatusServing
	if !serving {
		st = grpchealth.StatusNotServing
	}
	s.health.SetStatus("", st)
	for _, name := range s.services {
		s.health.SetStatus(name, st)
	}
}

// HTTPServer returns the configured *http.Server for the handler, serving
// HTTP/1.1 and cleartext HTTP/2 (h2c).
func (s *Server) HTTPServer() *http.Server {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           s.Handler(),
		Protocols:         p,
		ReadHeaderTimeout: s.opts.readHeaderTimeout,
		ReadTimeout:       s.opts.readTimeout,
		WriteTimeout:      s.opts.writeTimeout,
		IdleTimeout:       s.opts.idleTimeout,
		MaxHeaderBytes:    s.opts.maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
}

// Serve serves on ln until ctx is done, then shuts down gracefully: health
// turns NOT_SERVING, in-flight requests finish within the shutdown timeout.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := s.HTTPServer()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.logger.Info("listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	s.SetServing(false)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if serveErr := <-errc; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", ln.Addr(), serveErr)
	}
	if err != nil {
		return fmt.Errorf("shutdown %s: %w", ln.Addr(), err)
	}
	s.logger.Info("stopped", "addr", ln.Addr().String())
	return nil
}

// Listen opens a TCP listener, with an error naming the address.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}
