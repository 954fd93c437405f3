package counter

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/ids"
	"github.com/highgopress/highgopress/platform/liveconfig"
	"github.com/highgopress/highgopress/services/counter/app"
	"github.com/highgopress/highgopress/services/counter/redisstore"
)

// Live is the counter's part of the configuration centre: the settings that
// may change at run time, from Consul KV (liveconfig.Key("counter")), on
// every replica.
type Live struct {
	// CacheTTL is the hot-read caches' lifetime (HGP_COUNTER_CACHE_TTL).
	CacheTTL time.Duration
	// BatchMax is the most commands per Redis pipeline (HGP_COUNTER_BATCH_MAX).
	BatchMax int
	// WritesOff are namespaces whose writes (likes, unlikes, increments)
	// answer unavailable while reads keep working (HGP_COUNTER_WRITES_OFF).
	WritesOff []string
}

// LiveSchema validates the counter's run-time documents by the start-up
// rules of the same variables.
var LiveSchema = liveconfig.Schema[Live]{
	Name:    Name,
	Runtime: []string{"HGP_COUNTER_CACHE_TTL", "HGP_COUNTER_BATCH_MAX", "HGP_COUNTER_WRITES_OFF"},
	Parse:   liveFrom,
}

func liveFrom(r *config.Reader) Live {
	l := Live{
		CacheTTL:  r.Duration("HGP_COUNTER_CACHE_TTL", app.DefaultCacheTTL, 0, time.Minute),
		BatchMax:  r.Int("HGP_COUNTER_BATCH_MAX", redisstore.DefaultBatchMax, 1, 10_000),
		WritesOff: r.List("HGP_COUNTER_WRITES_OFF", nil),
	}
	for _, ns := range l.WritesOff {
		if err := ids.CheckNamespace(ns); err != nil {
			r.Check("HGP_COUNTER_WRITES_OFF", fmt.Errorf("%q: %w", ns, err))
		}
	}
	return l
}

// env is l as the variables it was read from: the base a document overlays.
func (l Live) env() map[string]string {
	return map[string]string{
		"HGP_COUNTER_CACHE_TTL":  l.CacheTTL.String(),
		"HGP_COUNTER_BATCH_MAX":  fmt.Sprint(l.BatchMax),
		"HGP_COUNTER_WRITES_OFF": strings.Join(l.WritesOff, ","),
	}
}

// writeSwitch refuses writes to switched-off namespaces.
type writeSwitch struct {
	off atomic.Pointer[[]string]
}

// writeProcedures are the procedures that change an item.
var writeProcedures = []string{
	counterv1connect.CounterServiceLikeProcedure,
	counterv1connect.CounterServiceUnlikeProcedure,
	counterv1connect.CounterServiceIncrementProcedure,
}

// interceptor answers unavailable for a write to a switched-off namespace,
// before the handler runs.
func (w *writeSwitch) interceptor() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if off := w.off.Load(); off != nil && len(*off) > 0 && slices.Contains(writeProcedures, req.Spec().Procedure) {
				if m, ok := req.Any().(interface{ GetItem() *counterv1.ItemRef }); ok && slices.Contains(*off, m.GetItem().GetNamespace()) {
					return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf(
						"writes to namespace %q are switched off for maintenance: reads work; retry later", m.GetItem().GetNamespace()))
				}
			}
			return next(ctx, req)
		}
	}
}

// ApplyLive puts run-time settings into force.
func (c *Counter) ApplyLive(l Live) {
	c.app.SetCacheTTL(l.CacheTTL)
	c.store.SetBatchMax(l.BatchMax)
	off := slices.Clone(l.WritesOff)
	old := c.writes.off.Swap(&off)
	if old == nil || !slices.Equal(*old, off) {
		c.logger.Info("namespace write switches", "writes_off", off)
	}
}

// liveWorker applies cfg's run-time settings to c and returns the
// configuration watcher that keeps them up to date, or nil without Consul.
func liveWorker(logger *slog.Logger, cfg Config, c *Counter) (func(context.Context) error, error) {
	initial := Live{CacheTTL: cfg.CacheTTL, BatchMax: cfg.BatchMax, WritesOff: cfg.WritesOff}
	c.ApplyLive(initial)
	if !cfg.Consul.Enabled() {
		return nil, nil
	}
	client, err := cfg.Consul.Client()
	if err != nil {
		return nil, fmt.Errorf("counter: consul (HGP_CONSUL_ADDR): %w", err)
	}
	w := liveconfig.NewWatcher(logger, client, LiveSchema, config.FromMap(initial.env()), initial, c.ApplyLive,
		liveconfig.WithRegisterer(prometheus.DefaultRegisterer))
	return w.Run, nil
}
