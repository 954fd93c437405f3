package gateway

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/discovery"
	"github.com/highgopress/highgopress/platform/identity"
	"github.com/highgopress/highgopress/services/gateway/apistats"
	"github.com/highgopress/highgopress/services/gateway/auth"
	"github.com/highgopress/highgopress/services/gateway/proxy"
	"github.com/highgopress/highgopress/services/gateway/ratelimit"
)

// Defaults of the gateway's configuration.
const (
	DefaultAddr         = "127.0.0.1:8080"
	DefaultIssuer       = "highgopress"
	DefaultAudience     = "highgopress-api"
	DefaultLeeway       = 30 * time.Second
	DefaultMaxBodyBytes = 1 << 20
	DefaultMaxTimeout   = 30 * time.Second
	// DefaultReadHeaderTimeout cuts off clients that send headers slowly.
	DefaultReadHeaderTimeout = 5 * time.Second
	// DefaultAttemptTimeout bounds one attempt on one backend instance
	// (HGP_GATEWAY_ATTEMPT_TIMEOUT). It sits above the counter's own
	// budgets — a frozen Redis is answered Unavailable by the counter
	// after HGP_COUNTER_REDIS_TIMEOUT (1 s); a first touch may wait up to
	// HGP_COUNTER_REBUILD_WAIT (1 s) for the pipeline and then load from
	// MySQL within HGP_COUNTER_MYSQL_TIMEOUT (2 s), 3 s at worst — so that
	// a healthy counter's precise answer reaches the client and a counter
	// is never ejected for its dependency's fault; a frozen counter costs
	// a read this long before it is retried elsewhere and the instance is
	// ejected.
	DefaultAttemptTimeout = 4 * time.Second
	// DefaultRateKeyPrefix prefixes the rate limiter's Redis keys.
	DefaultRateKeyPrefix = "hgp:rl"
)

// Config is the gateway's validated configuration.
type Config struct {
	// Addr is the public listen address (HGP_GATEWAY_ADDR).
	Addr string
	// CounterURLs are the counter instances for the static balancer
	// (HGP_GATEWAY_COUNTER_URLS); unused when WithBalancer is given.
	CounterURLs []*url.URL
	// AnalyticsURLs are the analytics instances for the static balancer
	// (HGP_GATEWAY_ANALYTICS_URLS, optional: without them AnalyticsService
	// answers Unimplemented unless routing through Consul).
	AnalyticsURLs []*url.URL
	// MaxBodyBytes bounds a request body (HGP_GATEWAY_MAX_BODY_BYTES).
	MaxBodyBytes int64
	// MaxMessageBytes bounds a compressed request message once inflated
	// (HGP_MAX_MESSAGE_BYTES, as for the backends; 0: 256 KiB). The gateway
	// checks it without inflating more than this (see checkCompressed).
	MaxMessageBytes int64
	// MaxTimeout caps every forwarded unary call (HGP_GATEWAY_MAX_TIMEOUT).
	MaxTimeout time.Duration
	// MaxStreamDuration caps a forwarded server stream's lifetime
	// (HGP_GATEWAY_MAX_STREAM_DURATION; 0, the default: streams last
	// until the client or the backend ends them). A client's own timeout
	// header applies to streams too.
	MaxStreamDuration time.Duration
	// AttemptTimeout bounds each attempt on one backend instance, capped by
	// the request's deadline (HGP_GATEWAY_ATTEMPT_TIMEOUT; 0: 500ms).
	AttemptTimeout time.Duration
	// Auth configures token verification (HGP_JWT_*).
	Auth auth.Config
	// CORSOrigins are the browser origins allowed to call the gateway
	// (HGP_GATEWAY_CORS_ORIGINS, comma list; empty: same origin only).
	CORSOrigins []string
	// IdentitySecret signs the internal identity header (HGP_IDENTITY_SECRET).
	IdentitySecret []byte
	// ReadHeaderTimeout bounds how long a client may take to send its
	// request headers (HGP_GATEWAY_READ_HEADER_TIMEOUT; 0: 5s).
	ReadHeaderTimeout time.Duration

	// Consul, when Consul.Enabled() (HGP_CONSUL_ADDR and the other
	// HGP_CONSUL_* variables), routes to the healthy instances in Consul's
	// catalog instead of CounterURLs.
	Consul discovery.Config
	// ConsulTag restricts routing to instances carrying this Consul tag
	// (HGP_GATEWAY_CONSUL_TAG; empty: every instance).
	ConsulTag string

	// ReadOnly is the degrade switch (HGP_GATEWAY_READ_ONLY): writes answer
	// unavailable, reads keep working. It can change at run time through the
	// configuration centre (see Live).
	ReadOnly bool

	// RateLimit enables rate limiting (HGP_RATE_ENABLED; default on when
	// HGP_REDIS_ADDR is set) with the budgets of Rate (HGP_RATE_*).
	RateLimit bool
	Rate      ratelimit.Config
	// RateKeyPrefix prefixes the limiter's Redis keys (HGP_RATE_KEY_PREFIX,
	// default hgp:rl).
	RateKeyPrefix string
	// Redis holds the shared rate-limit budgets (HGP_REDIS_ADDR,
	// HGP_REDIS_PASSWORD, HGP_REDIS_DB). Without an address the budgets are
	// per replica (in-process).
	Redis config.Redis

	// APIStats configures API call statistics (HGP_APISTATS_FLUSH_INTERVAL).
	APIStats apistats.Config
	// Kafka, when Brokers is set (HGP_KAFKA_BROKERS, HGP_KAFKA_TOPIC), is
	// where API statistics go as API_CALL events; otherwise they are logged.
	Kafka config.Kafka
}

// ConfigFrom reads the gateway's variables from r. Problems are recorded in
// r (see config.Reader.Err), each naming its variable.
// HGP_GATEWAY_COUNTER_URLS is required unless HGP_CONSUL_ADDR is set
// (routing through Consul); BuildWith with WithBalancer does not need it.
func ConfigFrom(r *config.Reader) Config { return readConfig(r, true) }

// readConfig is ConfigFrom; with needURLs false (a Balancer is supplied in
// code) HGP_GATEWAY_COUNTER_URLS is optional.
func readConfig(r *config.Reader, needURLs bool) Config {
	c := Config{
		Addr:              r.String("HGP_GATEWAY_ADDR", DefaultAddr),
		MaxBodyBytes:      int64(r.Int("HGP_GATEWAY_MAX_BODY_BYTES", DefaultMaxBodyBytes, 1<<10, 64<<20)),
		MaxMessageBytes:   int64(r.Int("HGP_MAX_MESSAGE_BYTES", DefaultMaxMessageBytes, 1<<10, 64<<20)),
		MaxTimeout:        r.Duration("HGP_GATEWAY_MAX_TIMEOUT", DefaultMaxTimeout, 100*time.Millisecond, time.Hour),
		MaxStreamDuration: r.Duration("HGP_GATEWAY_MAX_STREAM_DURATION", 0, 0, 24*time.Hour),
		AttemptTimeout:    r.Duration("HGP_GATEWAY_ATTEMPT_TIMEOUT", DefaultAttemptTimeout, 10*time.Millisecond, time.Minute),
		ReadHeaderTimeout: r.Duration("HGP_GATEWAY_READ_HEADER_TIMEOUT", DefaultReadHeaderTimeout, 100*time.Millisecond, time.Minute),
		CORSOrigins:       r.List("HGP_GATEWAY_CORS_ORIGINS", nil),
		Consul:            discovery.ConfigFrom(r),
		ConsulTag:         r.String("HGP_GATEWAY_CONSUL_TAG", ""),
		ReadOnly:          r.Bool("HGP_GATEWAY_READ_ONLY", false),
		Redis:             config.RedisFrom(r, ""),
		APIStats:          apistats.ConfigFrom(r),
		Kafka:             config.KafkaFrom(r),
	}
	c.RateLimit = r.Bool("HGP_RATE_ENABLED", c.Redis.Enabled())
	if c.RateLimit {
		c.Rate = ratelimit.ConfigFrom(r)
		c.RateKeyPrefix = r.String("HGP_RATE_KEY_PREFIX", DefaultRateKeyPrefix)
	}
	if c.Consul.Enabled() {
		needURLs = false
	}
	for _, o := range c.CORSOrigins {
		if u, err := url.Parse(o); o != "*" && (err != nil || u.Scheme == "" || u.Host == "" || u.Path != "") {
			r.Check("HGP_GATEWAY_CORS_ORIGINS", fmt.Errorf("%q is not an origin like https://app.example.com", o))
		}
	}

	var rawURLs []string
	if needURLs {
		if r.Required("HGP_GATEWAY_COUNTER_URLS") != "" {
			rawURLs = r.List("HGP_GATEWAY_COUNTER_URLS", nil)
		}
	} else {
		rawURLs = r.List("HGP_GATEWAY_COUNTER_URLS", nil)
	}
	if len(rawURLs) > 0 {
		urls, err := proxy.ParseBackendURLs(rawURLs)
		r.Check("HGP_GATEWAY_COUNTER_URLS", err)
		c.CounterURLs = urls
	}
	if raw := r.List("HGP_GATEWAY_ANALYTICS_URLS", nil); len(raw) > 0 {
		urls, err := proxy.ParseBackendURLs(raw)
		r.Check("HGP_GATEWAY_ANALYTICS_URLS", err)
		c.AnalyticsURLs = urls
	}

	if secret := r.Required("HGP_IDENTITY_SECRET"); secret != "" {
		if len(secret) < identity.MinSecretLen {
			r.Check("HGP_IDENTITY_SECRET", fmt.Errorf("must be at least %d bytes, got %d", identity.MinSecretLen, len(secret)))
		}
		c.IdentitySecret = []byte(secret)
	}

	c.Auth.Issuer = r.String("HGP_JWT_ISSUER", DefaultIssuer)
	c.Auth.Audience = r.String("HGP_JWT_AUDIENCE", DefaultAudience)
	c.Auth.Leeway = r.Duration("HGP_JWT_LEEWAY", DefaultLeeway, 0, 5*time.Minute)
	if hs := r.String("HGP_JWT_HS256_SECRET", ""); hs != "" {
		if len(hs) < auth.MinHS256SecretLen {
			r.Check("HGP_JWT_HS256_SECRET", fmt.Errorf("must be at least %d bytes, got %d", auth.MinHS256SecretLen, len(hs)))
		}
		c.Auth.HS256Secret = []byte(hs)
	}
	for i, p := range r.List("HGP_JWT_HS256_PREVIOUS_SECRETS", nil) {
		if len(p) < auth.MinHS256SecretLen {
			r.Check("HGP_JWT_HS256_PREVIOUS_SECRETS", fmt.Errorf("secret %d must be at least %d bytes, got %d", i+1, auth.MinHS256SecretLen, len(p)))
			continue
		}
		c.Auth.HS256Previous = append(c.Auth.HS256Previous, []byte(p))
	}
	if len(c.Auth.HS256Previous) > 0 && c.Auth.HS256Secret == nil {
		r.Check("HGP_JWT_HS256_PREVIOUS_SECRETS", errors.New("needs HGP_JWT_HS256_SECRET (the secret new tokens are signed with)"))
	}
	if paths := r.List("HGP_JWT_RS256_PUBLIC_KEYS", nil); len(paths) > 0 {
		keys, err := auth.LoadRSAPublicKeys(paths)
		r.Check("HGP_JWT_RS256_PUBLIC_KEYS", err)
		c.Auth.RS256Keys = keys
	}
	if c.Auth.HS256Secret == nil && len(c.Auth.RS256Keys) == 0 {
		r.Check("HGP_JWT_HS256_SECRET", errors.New("no token key: set HGP_JWT_HS256_SECRET and/or HGP_JWT_RS256_PUBLIC_KEYS"))
	}
	return c
}
