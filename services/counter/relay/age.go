package relay

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	platformmetrics "github.com/highgopress/highgopress/platform/metrics"
)

// oldestAge is the age of the oldest entry still in the outbox (0 when it
// is empty): what the outbox-age alert watches, since a depth that stays
// constant can hide entries that never leave.
var oldestAge = platformmetrics.Register(prometheus.DefaultRegisterer, prometheus.NewGauge(prometheus.GaugeOpts{
	Name: "hgp_relay_outbox_oldest_age_seconds",
	Help: "Age of the oldest entry in the outbox (0 when empty), sampled with the depth.",
}))

// sampleOldest reads the first entry's id (its time is the age) with the
// depth sample.
func (r *Relay) sampleOldest(ctx context.Context) {
	msgs, err := r.rdb.XRangeN(ctx, r.o.stream, "-", "+", 1).Result()
	if err != nil {
		if ctx.Err() == nil {
			r.fail("depth", err)
		}
		return
	}
	if len(msgs) == 0 {
		oldestAge.Set(0)
		return
	}
	if _, at, err := Version(msgs[0].ID); err == nil {
		oldestAge.Set(max(time.Since(at).Seconds(), 0))
	}
}
