package gateway

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/identity"
	"github.com/highgopress/highgopress/services/gateway/auth"
	"github.com/highgopress/highgopress/services/gateway/proxy"
)

// Defaults of the gateway's configuration.
const (
	DefaultAddr         = "127.0.0.1:8080"
	DefaultIssuer       = "highgopress"
	DefaultAudience     = "highgopress-api"
	DefaultLeeway       = 30 * time.Second
	DefaultMaxBodyBytes = 1 << 20
	DefaultMaxTimeout   = 30 * time.Second
)

// Config is the gateway's validated configuration.
type Config struct {
	// Addr is the public listen address (HGP_GATEWAY_ADDR).
	Addr string
	// CounterURLs are the counter instances for the static balancer
	// (HGP_GATEWAY_COUNTER_URLS); unused when WithBalancer is given.
	CounterURLs []*url.URL
	// MaxBodyBytes bounds a request body (HGP_GATEWAY_MAX_BODY_BYTES).
	MaxBodyBytes int64
	// MaxTimeout caps every forwarded call (HGP_GATEWAY_MAX_TIMEOUT).
	MaxTimeout time.Duration
	// Auth configures token verification (HGP_JWT_*).
	Auth auth.Config
	// CORSOrigins are the browser origins allowed to call the gateway
	// (HGP_GATEWAY_CORS_ORIGINS, comma list; empty: same origin only).
	CORSOrigins []string
	// IdentitySecret signs the internal identity header (HGP_IDENTITY_SECRET).
	IdentitySecret []byte
}

// ReadConfig reads the gateway's variables from r. Problems are recorded in
// r (see config.Reader.Err), each naming its variable. With needURLs false,
// HGP_GATEWAY_COUNTER_URLS is optional (a Balancer is supplied in code).
func ReadConfig(r *config.Reader, needURLs bool) Config {
	c := Config{
		Addr:         r.String("HGP_GATEWAY_ADDR", DefaultAddr),
		MaxBodyBytes: int64(r.Int("HGP_GATEWAY_MAX_BODY_BYTES", DefaultMaxBodyBytes, 1<<10, 64<<20)),
		MaxTimeout:   r.Duration("HGP_GATEWAY_MAX_TIMEOUT", DefaultMaxTimeout, 100*time.Millisecond, time.Hour),
		CORSOrigins:  r.List("HGP_GATEWAY_CORS_ORIGINS", nil),
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
