package gateway

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/liveconfig"
	"github.com/highgopress/highgopress/services/gateway/apistats"
	"github.com/highgopress/highgopress/services/gateway/ratelimit"
)

// Live is the gateway's part of the configuration centre: the settings that
// may change at run time, from Consul KV (liveconfig.Key("gateway")), on
// every replica within a blocking query's round trip.
type Live struct {
	// Rate is the limiter's policy (HGP_RATE_WRITE_USER, HGP_RATE_READ_USER,
	// HGP_RATE_WRITE_IP, HGP_RATE_READ_IP, HGP_RATE_REDIS_DOWN).
	Rate ratelimit.Policy
	// ReadOnly is the degrade switch (HGP_GATEWAY_READ_ONLY): writes answer
	// unavailable without reaching a backend, reads keep working.
	ReadOnly bool
	// APIStatsFlush is how often API statistics are flushed
	// (HGP_APISTATS_FLUSH_INTERVAL).
	APIStatsFlush time.Duration
}

// LiveSchema validates the gateway's run-time documents by the start-up
// rules of the same variables.
var LiveSchema = liveconfig.Schema[Live]{
	Name: "gateway",
	Runtime: []string{
		"HGP_RATE_WRITE_USER", "HGP_RATE_READ_USER", "HGP_RATE_WRITE_IP", "HGP_RATE_READ_IP",
		"HGP_RATE_REDIS_DOWN", "HGP_GATEWAY_READ_ONLY", "HGP_APISTATS_FLUSH_INTERVAL",
	},
	Parse: func(r *config.Reader) Live {
		return Live{
			Rate:          ratelimit.PolicyFrom(r),
			ReadOnly:      r.Bool("HGP_GATEWAY_READ_ONLY", false),
			APIStatsFlush: apistats.ConfigFrom(r).FlushInterval,
		}
	},
}

// env is l as the variables it was read from: the base a document overlays.
func (l Live) env() map[string]string {
	return map[string]string{
		"HGP_RATE_WRITE_USER": l.Rate.WriteUser, "HGP_RATE_READ_USER": l.Rate.ReadUser,
		"HGP_RATE_WRITE_IP": l.Rate.WriteIP, "HGP_RATE_READ_IP": l.Rate.ReadIP,
		"HGP_RATE_REDIS_DOWN": string(l.Rate.RedisDown), "HGP_GATEWAY_READ_ONLY": strconv.FormatBool(l.ReadOnly),
		"HGP_APISTATS_FLUSH_INTERVAL": l.APIStatsFlush.String(),
	}
}

// live returns the run-time settings cfg starts with.
func (cfg Config) live() Live {
	rate := cfg.Rate.Policy()
	if !cfg.RateLimit {
		rate = ratelimit.DefaultConfig().Policy()
	}
	flush := cfg.APIStats.FlushInterval
	if flush <= 0 {
		flush = apistats.DefaultConfig().FlushInterval
	}
	return Live{Rate: rate, ReadOnly: cfg.ReadOnly, APIStatsFlush: flush}
}

// applyLive puts run-time settings into force.
func (g *Gateway) applyLive(l Live) {
	if g.readOnly.Swap(l.ReadOnly) != l.ReadOnly {
		if l.ReadOnly {
			g.logger.Warn("read-only mode on: writes answer unavailable")
		} else {
			g.logger.Info("read-only mode off: writes accepted")
		}
	}
	if g.recorder != nil {
		g.recorder.SetFlushInterval(l.APIStatsFlush)
	}
	if g.limiter == nil {
		return
	}
	if err := g.limiter.SetPolicy(l.Rate); err != nil {
		// LiveSchema validated the same rules: unreachable unless they drift.
		g.logger.Error("rate limit policy refused", "err", err)
	}
}

// watchLive adds the configuration watcher to the gateway's workers when
// Consul is configured.
func (g *Gateway) watchLive(cfg Config) error {
	g.readOnly.Store(cfg.ReadOnly)
	if !cfg.Consul.Enabled() {
		return nil
	}
	client, err := cfg.Consul.Client()
	if err != nil {
		return fmt.Errorf("consul (HGP_CONSUL_ADDR): %w", err)
	}
	initial := cfg.live()
	w := liveconfig.NewWatcher(g.logger, client, LiveSchema, config.FromMap(initial.env()), initial, g.applyLive,
		liveconfig.WithRegisterer(prometheus.DefaultRegisterer))
	g.live = w
	g.workers = append(g.workers, func(ctx context.Context) error { return w.Run(ctx) })
	return nil
}

// LiveStatus is the configuration centre's view of one gateway.
type LiveStatus struct {
	Settings Live
	Version  liveconfig.Version
	// Rejected counts documents refused by validation; LastRejection says why.
	Rejected      uint64
	LastRejection string
}

// LiveStatus returns the run-time settings in force and where they came
// from; without Consul, the start-up settings and version "env".
func (g *Gateway) LiveStatus() LiveStatus {
	if g.live == nil {
		return LiveStatus{Settings: Live{ReadOnly: g.readOnly.Load()}}
	}
	s, v := g.live.Current()
	n, msg := g.live.Rejected()
	return LiveStatus{Settings: s, Version: v, Rejected: n, LastRejection: msg}
}
