// Package bootstrap is the one start-up path of every HighGoPress service:
// configuration from the environment, a JSON logger, signal handling, the
// servers, background workers and an orderly shutdown. A service provides a
// BuildFunc; the standalone mode runs several services' components in one
// process through Run.
package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/discovery"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/platform/telemetry"
)

// Component is one running service: a server on an address and optional
// background workers. Workers run until their context is cancelled.
type Component struct {
	Name   string
	Addr   string
	Server *server.Server
	// Listener, when set, is used instead of listening on Addr.
	Listener net.Listener
	Workers  []func(ctx context.Context) error
	// Close releases resources after the server and workers stopped.
	Close func() error
}

// BuildFunc builds a service from configuration. It must not start serving.
type BuildFunc func(ctx context.Context, logger *slog.Logger, cfg *config.Reader) (*Component, error)

// Start prepares a process: configuration from the environment, a JSON
// logger at HGP_LOG_LEVEL (debug, info, warn, error), and a context that is
// cancelled on SIGINT or SIGTERM. A bad HGP_LOG_LEVEL is recorded on the
// returned Reader like any other configuration error.
func Start(name string) (context.Context, *slog.Logger, *config.Reader, context.CancelFunc) {
	cfg := config.FromEnv()
	level := cfg.Enum("HGP_LOG_LEVEL", "info", "debug", "info", "warn", "error")
	logger := telemetry.WithTraceIDs(logging.NewWriter(os.Stderr, name, level))
	tuneGC(logger, os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	shutdown := startTracing(ctx, logger, name, cfg)
	return ctx, logger, cfg, func() {
		stop()
		shutdown()
	}
}

// startTracing configures OpenTelemetry from the OTEL_* variables (off
// unless an exporter is named; a bad value is a configuration error on
// cfg) and returns what flushes the spans at exit.
func startTracing(ctx context.Context, logger *slog.Logger, name string, cfg *config.Reader) func() {
	tc, err := telemetry.ConfigFrom(func(k string) string { return cfg.String(k, "") })
	cfg.Check("OTEL_*", err)
	if err != nil {
		return func() {}
	}
	shutdown, err := telemetry.Setup(ctx, logger, name, tc)
	cfg.Check("OTEL_EXPORTER_OTLP_ENDPOINT", err)
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(sctx); err != nil {
			logger.Warn("flushing spans", "err", err)
		}
	}
}

// Main runs one service as a process: it is what every cmd/<service> calls.
func Main(name string, build BuildFunc) {
	ctx, logger, cfg, stop := Start(name)
	defer stop()
	disco := discovery.ConfigFrom(cfg)
	metricsAddr := cfg.String("HGP_METRICS_ADDR", "")
	profiling := cfg.Bool("HGP_PPROF", false)
	comp, err := build(ctx, logger, cfg)
	if err == nil {
		err = cfg.Err()
	}
	if err == nil && disco.Enabled() {
		err = registerWithConsul(logger, disco, comp)
	}
	comps := []*Component{comp}
	if err == nil && metricsAddr != "" {
		comps = append(comps, MetricsComponent(logger, metricsAddr, profiling))
	}
	if err != nil {
		logger.Error("start-up failed", "err", err)
		os.Exit(2)
	}
	if err := Run(ctx, logger, comps...); err != nil {
		logger.Error("stopped with error", "err", err)
		os.Exit(1)
	}
}

// MetricsComponent serves Prometheus metrics of the default registry (Go
// runtime, process and every service's own collectors) at /metrics on addr,
// a separate port so the public one never exposes them. With profiling
// (HGP_PPROF) it also serves Go's profiles under /debug/pprof/.
func MetricsComponent(logger *slog.Logger, addr string, profiling bool) *Component {
	s := server.New(logger.With("component", "metrics"), nil)
	s.Handle("/metrics", promhttp.Handler())
	if profiling {
		s.Handle("/debug/pprof/", http.HandlerFunc(pprof.Index))
		s.Handle("/debug/pprof/cmdline", http.HandlerFunc(pprof.Cmdline))
		s.Handle("/debug/pprof/profile", http.HandlerFunc(pprof.Profile))
		s.Handle("/debug/pprof/symbol", http.HandlerFunc(pprof.Symbol))
		s.Handle("/debug/pprof/trace", http.HandlerFunc(pprof.Trace))
	}
	return &Component{Name: "metrics", Addr: addr, Server: s}
}

// registerWithConsul listens on the component's address (so the registered
// port is the real one) and adds a worker that registers the instance with a
// gRPC health check, keeps it registered and deregisters it on shutdown.
func registerWithConsul(logger *slog.Logger, disco discovery.Config, comp *Component) error {
	if comp.Server == nil {
		return nil
	}
	if comp.Listener == nil {
		ln, err := server.Listen(comp.Addr)
		if err != nil {
			return fmt.Errorf("%s: %w", comp.Name, err)
		}
		comp.Listener = ln
	}
	client, err := disco.Client()
	if err != nil {
		return fmt.Errorf("HGP_CONSUL_ADDR: %w", err)
	}
	reg, err := disco.Registration(comp.Name, comp.Listener.Addr().String())
	if err != nil {
		return fmt.Errorf("%s: %w", comp.Name, err)
	}
	comp.Workers = append(comp.Workers, discovery.RegistrationWorker(logger, client, reg))
	return nil
}

// Run serves every component until ctx is done or one of them fails, then
// stops them all: servers drain, workers are cancelled, Close is called in
// reverse order.
func Run(ctx context.Context, logger *slog.Logger, comps ...*Component) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
		cancel()
	}
	for _, c := range comps {
		ln := c.Listener
		if ln == nil && c.Server != nil {
			var err error
			if ln, err = server.Listen(c.Addr); err != nil {
				fail(fmt.Errorf("%s: %w", c.Name, err))
				continue
			}
		}
		if c.Server != nil {
			wg.Add(1)
			go func(c *Component, ln net.Listener) {
				defer wg.Done()
				if err := c.Server.Serve(ctx, ln); err != nil {
					fail(fmt.Errorf("%s: %w", c.Name, err))
				}
			}(c, ln)
		}
		for _, w := range c.Workers {
			wg.Add(1)
			go func(c *Component, w func(context.Context) error) {
				defer wg.Done()
				if err := w(ctx); err != nil && !errors.Is(err, context.Canceled) {
					fail(fmt.Errorf("%s worker: %w", c.Name, err))
				}
			}(c, w)
		}
	}
	<-ctx.Done()
	wg.Wait()
	for i := len(comps) - 1; i >= 0; i-- {
		if comps[i].Close != nil {
			if err := comps[i].Close(); err != nil {
				errs = append(errs, fmt.Errorf("%s close: %w", comps[i].Name, err))
			}
		}
	}
	logger.Info("shutdown complete")
	return errors.Join(errs...)
}
