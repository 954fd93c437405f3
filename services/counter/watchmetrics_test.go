package counter_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/counter"
)

// TestWatchGaugesFollowStreams: the subscription and watched-item gauges
// rise with open WatchCounts streams and fall back when they end.
func TestWatchGaugesFollowStreams(t *testing.T) {
	e := newEnv(t, counter.WithWatch(watchMaxPerClient(100)))
	client := e.counters(rpctest.Protocols[0])
	subs0, items0 := gaugeValue(t, "hgp_counter_watch_subscriptions"), gaugeValue(t, "hgp_counter_watch_items")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 6 {
		startWatch(t, ctx, client, watchItems(1+i%3))
	}
	if subs, items := gaugeValue(t, "hgp_counter_watch_subscriptions")-subs0, gaugeValue(t, "hgp_counter_watch_items")-items0; subs != 6 || items != 3 {
		t.Fatalf("with 6 streams on 3 items the gauges rose by %v subscriptions and %v items; want 6 and 3", subs, items)
	}
	cancel()
	testenv.Eventually(t, 20*time.Second, "the gauges are back where they were", func() bool {
		return gaugeValue(t, "hgp_counter_watch_subscriptions") == subs0 && gaugeValue(t, "hgp_counter_watch_items") == items0
	})
}

// gaugeValue reads a gauge without labels from the default registry.
func gaugeValue(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("gauge %s is not registered", name)
	return 0
}
