package ratelimit

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/ulule/limiter/v3"

	"github.com/highgopress/highgopress/platform/config"
)

// Mode is what the limiter does while Redis is unreachable.
type Mode string

const (
	// FailOpen keeps limiting with an in-process limiter (each replica then
	// enforces the limits on its own share of the traffic).
	FailOpen Mode = "open"
	// FailClosed rejects every request with Unavailable.
	FailClosed Mode = "closed"
)

// Config is every rate-limiting setting, in one place. Rates use the
// limiter's "<limit>-<period>" format (S, M, H, D: "100-S" is 100 requests
// per second); "off" (or "0") disables a class.
//
//	HGP_RATE_WRITE_USER       writes per authenticated user   (default 20-S)
//	HGP_RATE_READ_USER        reads per authenticated user    (default 200-S)
//	HGP_RATE_WRITE_IP         writes per client IP            (default 100-S)
//	HGP_RATE_READ_IP          reads per client IP             (default 1000-S)
//	HGP_RATE_TRUSTED_PROXIES  CIDRs whose X-Forwarded-For is believed (default none)
//	HGP_RATE_REDIS_DOWN       open | closed                   (default open)
//	HGP_RATE_REDIS_TIMEOUT    budget for one Redis check      (default 100ms)
type Config struct {
	WriteUser, ReadUser, WriteIP, ReadIP string
	TrustedProxies                       []netip.Prefix
	RedisDown                            Mode
	RedisTimeout                         time.Duration
}

// DefaultConfig returns the defaults listed on Config.
func DefaultConfig() Config {
	return Config{
		WriteUser:    "20-S",
		ReadUser:     "200-S",
		WriteIP:      "100-S",
		ReadIP:       "1000-S",
		RedisDown:    FailOpen,
		RedisTimeout: 100 * time.Millisecond,
	}
}

// ConfigFrom reads Config from the HGP_RATE_* variables; problems are
// recorded on r, naming the variable.
func ConfigFrom(r *config.Reader) Config {
	def := DefaultConfig()
	p := PolicyFrom(r)
	c := Config{
		WriteUser:    p.WriteUser,
		ReadUser:     p.ReadUser,
		WriteIP:      p.WriteIP,
		ReadIP:       p.ReadIP,
		RedisDown:    p.RedisDown,
		RedisTimeout: r.Duration("HGP_RATE_REDIS_TIMEOUT", def.RedisTimeout, time.Millisecond, 10*time.Second),
	}
	proxies, err := ParseTrustedProxies(r.List("HGP_RATE_TRUSTED_PROXIES", nil))
	r.Check("HGP_RATE_TRUSTED_PROXIES", err)
	c.TrustedProxies = proxies
	return c
}

// PolicyFrom reads the run-time part of Config (the four budgets and the
// Redis-down mode) from r, by the rules of ConfigFrom.
func PolicyFrom(r *config.Reader) Policy {
	def := DefaultConfig()
	p := Policy{
		WriteUser: r.String("HGP_RATE_WRITE_USER", def.WriteUser),
		ReadUser:  r.String("HGP_RATE_READ_USER", def.ReadUser),
		WriteIP:   r.String("HGP_RATE_WRITE_IP", def.WriteIP),
		ReadIP:    r.String("HGP_RATE_READ_IP", def.ReadIP),
		RedisDown: Mode(r.Enum("HGP_RATE_REDIS_DOWN", string(def.RedisDown), string(FailOpen), string(FailClosed))),
	}
	for _, v := range []struct{ name, rate string }{
		{"HGP_RATE_WRITE_USER", p.WriteUser}, {"HGP_RATE_READ_USER", p.ReadUser},
		{"HGP_RATE_WRITE_IP", p.WriteIP}, {"HGP_RATE_READ_IP", p.ReadIP},
	} {
		if _, err := parseRate(v.rate); err != nil {
			r.Check(v.name, err)
		}
	}
	return p
}

// parseRate parses "100-S"; "off", "0" and "" give a zero Rate (disabled).
func parseRate(s string) (limiter.Rate, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "", "off", "0", "none":
		return limiter.Rate{}, nil
	}
	r, err := limiter.NewRateFromFormatted(s)
	if err != nil {
		return limiter.Rate{}, fmt.Errorf("rate %q: want <limit>-<S|M|H|D> such as 100-S, or off: %w", s, err)
	}
	if r.Limit <= 0 {
		return limiter.Rate{}, fmt.Errorf("rate %q: limit must be positive (use off to disable)", s)
	}
	return r, nil
}
