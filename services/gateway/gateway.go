// Package gateway is HighGoPress's only public door. It authenticates end
// users (JWT bearer tokens), rate-limits them per user and per client IP
// with budgets shared by every replica (Redis), routes each public RPC to a
// healthy backend instance from Consul's catalog (or a static list) and
// forwards it without decoding, carrying the acting user in the signed
// internal identity header, and counts calls per procedure and result code
// (API statistics). Connect, gRPC and gRPC-Web are served from one
// port over HTTP/1.1 and h2c, with gRPC health checks and server reflection
// answered locally.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/redis/go-redis/v9"

	// The gateway serves reflection for these services: importing the
	// generated packages registers their descriptors.
	_ "github.com/highgopress/highgopress/gen/highgopress/analytics/v1/analyticsv1connect"
	_ "github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/bootstrap"
	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/discovery"
	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/platform/identity"
	"github.com/highgopress/highgopress/platform/liveconfig"
	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/services/gateway/apistats"
	"github.com/highgopress/highgopress/services/gateway/apistats/kafkasink"
	"github.com/highgopress/highgopress/services/gateway/auth"
	"github.com/highgopress/highgopress/services/gateway/backends"
	"github.com/highgopress/highgopress/services/gateway/proxy"
	"github.com/highgopress/highgopress/services/gateway/ratelimit"
	"github.com/highgopress/highgopress/services/gateway/route"
)

// Limits of the public server (ReadHeaderTimeout is the default of
// Config.ReadHeaderTimeout).
const (
	ReadHeaderTimeout = DefaultReadHeaderTimeout
	ReadTimeout       = 30 * time.Second
	IdleTimeout       = 120 * time.Second
	MaxHeaderBytes    = 16 << 10
)

// Gateway is the public handler: route table, authentication, rate limits,
// body and deadline limits, forwarding, API statistics.
type Gateway struct {
	logger     *slog.Logger
	addr       string
	routes     *route.Table
	verifier   *auth.Verifier
	proxy      *proxy.Proxy
	transport  *http.Transport
	errw       *connect.ErrorWriter
	maxBody    int64
	maxMsg     int64
	maxTimeout time.Duration
	// maxStream caps a server stream's lifetime (0: no cap).
	maxStream time.Duration
	// unconfigured names the backends without instances configured
	// (static routing without their URLs): their procedures answer
	// Unimplemented with this message.
	unconfigured map[string]string
	// streamsCtx is cancelled when shutdown begins (endStreams): forwarded
	// server streams end then instead of holding the server's drain.
	streamsCtx  context.Context
	stopStreams context.CancelFunc
	// readTimeout is the public server's read timeout (for messages).
	readTimeout time.Duration
	admit       Admission
	server      *server.Server

	consul    *backends.Consul          // nil unless routing through Consul
	live      *liveconfig.Watcher[Live] // nil without Consul
	readOnly  atomic.Bool               // degrade switch (Live.ReadOnly)
	limiter   *ratelimit.Limiter        // nil when rate limiting is off
	rdb       redis.UniversalClient     // the limiter's Redis client (single or cluster), if any
	recorder  *apistats.Recorder
	sinkClose func() error
	workers   []func(context.Context) error
	closeOnce sync.Once
	closeErr  error
}

// New returns a Gateway for cfg. Routing: the Balancer given with
// WithBalancer, else Consul when cfg.Consul is enabled, else the static
// cfg.CounterURLs. Rate limiting and API statistics are set up from cfg.
// The gateway's background work (Consul watchers, statistics flushes) runs
// in Workers; Close releases everything after the server stopped.
func New(logger *slog.Logger, cfg Config, opts ...Option) (g *Gateway, err error) {
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
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	transport := server.NewH2CTransport()
	g = &Gateway{
		logger:     logger,
		addr:       cfg.Addr,
		routes:     o.routes,
		verifier:   verifier,
		transport:  transport,
		errw:       connect.NewErrorWriter(),
		maxBody:    cfg.MaxBodyBytes,
		maxMsg:     cfg.MaxMessageBytes,
		maxTimeout: cfg.MaxTimeout,
		maxStream:  cfg.MaxStreamDuration,
	}
	g.streamsCtx, g.stopStreams = context.WithCancel(context.Background())
	g.workers = append(g.workers, g.endStreams)
	defer func() {
		if err != nil {
			_ = g.Close()
		}
	}()

	upstream := newMeteredBalancer(backendServices(g.routes))
	balancer, err := g.balancer(cfg, o, upstream.countEjection)
	if err != nil {
		return nil, err
	}
	balancer = upstream.wrap(balancer)
	attempt := cfg.AttemptTimeout
	if attempt <= 0 {
		attempt = DefaultAttemptTimeout
	}
	g.proxy = proxy.New(logger, balancer, signer, append([]proxy.Option{
		proxy.WithTransport(transport),
		proxy.WithAttemptTimeout(attempt),
		proxy.WithMaxHeaderBytes(MaxHeaderBytes),
	}, o.proxyOpts...)...)

	if err := g.setUpAPIStats(cfg, o); err != nil {
		return nil, err
	}
	if cfg.RateLimit {
		if err := g.setUpRateLimit(cfg); err != nil {
			return nil, err
		}
	}
	if err := g.watchLive(cfg); err != nil {
		return nil, err
	}
	g.admit = o.admit

	readHeader := cfg.ReadHeaderTimeout
	if readHeader <= 0 {
		readHeader = ReadHeaderTimeout
	}
	sopts := append([]server.Option{
		server.WithReadHeaderTimeout(readHeader),
		server.WithReadTimeout(ReadTimeout),
		server.WithIdleTimeout(IdleTimeout),
		server.WithMaxHeaderBytes(MaxHeaderBytes),
	}, o.serverOpts...)
	// Middleware, innermost first (server.WithMiddleware: outermost last):
	// rate limit (the client IP's and the verified user's budgets, spent
	// concurrently: one Redis round trip of latency) → authentication
	// (verifies the token, rejects nothing) → API statistics (which count
	// every rejection) → gRPC-Web text translation (everything inside sees
	// binary gRPC-Web) → CORS (preflights answered first, RateLimit
	// headers exposed).
	if g.limiter != nil {
		sopts = append(sopts, server.WithMiddleware(g.limiter.Middleware))
	}
	sopts = append(sopts,
		server.WithMiddleware(g.authMiddleware),
		server.WithMiddleware(g.recorder.Middleware),
		server.WithMiddleware(grpcWebText),
		server.WithMiddleware(func(h http.Handler) http.Handler { return withCORS(cfg.CORSOrigins, h) }))
	g.server = server.New(logger, o.routes.Services(), sopts...)
	g.server.Handle("/", g)
	g.mountWebUI()
	g.readTimeout = g.server.HTTPServer().ReadTimeout
	return g, nil
}

// endStreams cancels every forwarded server stream once ctx is done (the
// start of shutdown): the server's Shutdown waits for active handlers, and
// a stream would otherwise hold it until the shutdown timeout. Clients see
// their stream broken off and watch again (on another replica).
func (g *Gateway) endStreams(ctx context.Context) error {
	<-ctx.Done()
	g.stopStreams()
	return nil
}

// balancer chooses how instances are picked.
func (g *Gateway) balancer(cfg Config, o options, onEject func(service string)) (proxy.Balancer, error) {
	if o.balancer != nil {
		return o.balancer, nil
	}
	if cfg.Consul.Enabled() {
		client, err := cfg.Consul.Client()
		if err != nil {
			return nil, fmt.Errorf("consul (HGP_CONSUL_ADDR): %w", err)
		}
		var bopts []backends.Option
		if cfg.ConsulTag != "" {
			bopts = append(bopts, backends.WithTag(cfg.ConsulTag))
		}
		bopts = append(bopts, backends.WithBalancerOptions(discovery.WithOnEject(onEject)))
		bopts = append(bopts, o.consulOpts...)
		c, err := backends.NewConsul(g.logger, client, backendServices(g.routes), bopts...)
		if err != nil {
			return nil, fmt.Errorf("consul balancer: %w", err)
		}
		g.consul = c
		g.workers = append(g.workers, c.Run)
		g.logger.Info("routing through consul", "consul", cfg.Consul.Addr, "services", backendServices(g.routes), "tag", cfg.ConsulTag)
		return c, nil
	}
	static := map[string][]*url.URL{}
	for _, r := range g.routes.Routes() {
		switch r.Backend {
		case route.CounterBackend:
			static[r.Backend] = cfg.CounterURLs
		case route.AnalyticsBackend:
			// Optional: without instances its procedures answer
			// Unimplemented, naming what to configure.
			if len(cfg.AnalyticsURLs) == 0 {
				if g.unconfigured == nil {
					g.unconfigured = map[string]string{}
				}
				g.unconfigured[r.Backend] = r.Service() + " is not configured on this gateway (set HGP_GATEWAY_ANALYTICS_URLS, or route through Consul)"
				continue
			}
			static[r.Backend] = cfg.AnalyticsURLs
		default:
			return nil, fmt.Errorf("route %s: no static instances for backend %q", r.Procedure, r.Backend)
		}
	}
	b, err := proxy.NewRoundRobin(static, proxy.WithOnEject(onEject))
	if err != nil {
		return nil, fmt.Errorf("static balancer: %w", err)
	}
	return b, nil
}

// backendServices lists the backend services of the routes, sorted.
func backendServices(t *route.Table) []string {
	var out []string
	for _, r := range t.Routes() {
		if !slices.Contains(out, r.Backend) {
			out = append(out, r.Backend)
		}
	}
	slices.Sort(out)
	return out
}

// setUpAPIStats creates the recorder and its sink: the one given with
// WithStatsSink, else Kafka when brokers are configured, else the log.
func (g *Gateway) setUpAPIStats(cfg Config, o options) error {
	sink := o.statsSink
	if sink == nil && len(cfg.Kafka.Brokers) > 0 {
		w := events.NewWriter(cfg.Kafka.Brokers, cfg.Kafka.Topic)
		sink, g.sinkClose = kafkasink.New(g.logger, w), w.Close
		g.logger.Info("api statistics go to kafka", "topic", cfg.Kafka.Topic, "flush_interval", cfg.APIStats.FlushInterval)
	}
	if sink == nil {
		sink = apistats.LogSink{Logger: g.logger}
	}
	g.recorder = apistats.NewRecorder(g.logger, sink, cfg.APIStats, append([]apistats.Option{
		apistats.WithKnownProcedures(func(p string) bool { _, ok := g.routes.Lookup(p); return ok }),
	}, o.statsOpts...)...)
	g.workers = append(g.workers, g.recorder.Run)
	return nil
}

// setUpRateLimit creates the limiter, a server middleware spending the
// client IP's budget and, for a request whose token authMiddleware
// verified, the user's budget, concurrently; classes come from the route
// table (unrouted GET and HEAD requests, the web page, count as reads;
// other unrouted requests as writes).
func (g *Gateway) setUpRateLimit(cfg Config) error {
	var rdb redis.UniversalClient
	if cfg.Redis.Addr != "" {
		g.rdb = cfg.Redis.Client(ratelimit.RedisOptions())
		rdb = g.rdb
	} else {
		g.logger.Warn("rate limiting without HGP_REDIS_ADDR: budgets are per gateway replica, not shared")
	}
	prefix := cfg.RateKeyPrefix
	if prefix == "" {
		prefix = DefaultRateKeyPrefix
	}
	lim, err := ratelimit.New(g.logger, rdb, cfg.Rate,
		ratelimit.WithKeyPrefix(prefix),
		ratelimit.WithSubject(verifiedSubject),
		ratelimit.WithClassify(func(r *http.Request) ratelimit.Class {
			if rt, ok := g.routes.Lookup(procedureOf(r)); ok {
				if rt.Class == route.Read {
					return ratelimit.Read
				}
				return ratelimit.Write
			}
			// Unrouted: the web page and its assets (GET/HEAD change
			// nothing) spend read budgets; anything else counts as a write.
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				return ratelimit.Read
			}
			return ratelimit.Write
		}))
	if err != nil {
		return fmt.Errorf("rate limiter: %w", err)
	}
	g.limiter = lim
	return nil
}

// Server returns the public server: the gateway's routes plus local health
// checks and reflection of the public services.
func (g *Gateway) Server() *server.Server { return g.server }

// Workers returns the gateway's background work: Consul watchers (when
// routing through Consul) and the API statistics flusher. Each runs until
// its context is cancelled.
func (g *Gateway) Workers() []func(context.Context) error { return slices.Clone(g.workers) }

// Component returns the gateway as a bootstrap component: its server on
// Config.Addr, its workers, and Close.
func (g *Gateway) Component() *bootstrap.Component {
	return &bootstrap.Component{Name: "gateway", Addr: g.addr, Server: g.server, Workers: g.Workers(), Close: g.Close}
}

// Instances returns the instances of a backend service the gateway
// currently knows from Consul ("host:port", sorted); nil without Consul.
func (g *Gateway) Instances(service string) []string {
	if g.consul == nil {
		return nil
	}
	return g.consul.Instances(service)
}

// Stats are the gateway's counters, for metrics and tests.
type Stats struct {
	// Backends is set when routing through Consul.
	Backends *backends.Stats
	// RateLimit is set when rate limiting is on.
	RateLimit *ratelimit.Stats
	APIStats  apistats.RecorderStats
}

// Stats returns the gateway's counters.
func (g *Gateway) Stats() Stats {
	var st Stats
	if g.consul != nil {
		b := g.consul.Stats()
		st.Backends = &b
	}
	if g.limiter != nil {
		l := g.limiter.Stats()
		st.RateLimit = &l
	}
	if g.recorder != nil {
		st.APIStats = g.recorder.Stats()
	}
	return st
}

// Close flushes the API statistics counted so far (call it after the server
// stopped, so in-flight requests are counted), closes the statistics sink
// and the rate limiter's Redis client, and releases idle connections to
// backends. Calling it again does nothing.
func (g *Gateway) Close() error {
	g.closeOnce.Do(func() {
		var errs []error
		if g.recorder != nil {
			errs = append(errs, g.recorder.Close())
		}
		if g.sinkClose != nil {
			errs = append(errs, g.sinkClose())
		}
		if g.limiter != nil {
			g.limiter.Close()
		}
		if g.rdb != nil {
			errs = append(errs, g.rdb.Close())
		}
		if g.transport != nil {
			g.transport.CloseIdleConnections()
		}
		if g.stopStreams != nil {
			g.stopStreams()
		}
		g.closeErr = errors.Join(errs...)
	})
	return g.closeErr
}

// Build is the gateway's bootstrap.BuildFunc.
func Build(ctx context.Context, logger *slog.Logger, cfg *config.Reader) (*bootstrap.Component, error) {
	return BuildWith()(ctx, logger, cfg)
}

var redisLoggerOnce sync.Once

// BuildWith returns a BuildFunc applying opts; with WithBalancer,
// HGP_GATEWAY_COUNTER_URLS becomes optional.
func BuildWith(opts ...Option) bootstrap.BuildFunc {
	return func(_ context.Context, logger *slog.Logger, r *config.Reader) (*bootstrap.Component, error) {
		var o options
		for _, opt := range opts {
			opt(&o)
		}
		cfg := readConfig(r, o.balancer == nil)
		if err := r.Err(); err != nil {
			return nil, err
		}
		// go-redis logs through a process-wide logger: send it to slog.
		redisLoggerOnce.Do(func() { redis.SetLogger(redisLogger{logger.With("lib", "go-redis")}) })
		g, err := New(logger, cfg, opts...)
		if err != nil {
			return nil, err
		}
		return g.Component(), nil
	}
}

// redisLogger adapts slog to go-redis's logger.
type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.WarnContext(ctx, fmt.Sprintf(format, v...))
}
