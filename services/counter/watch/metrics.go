package watch

import (
	"github.com/prometheus/client_golang/prometheus"

	platformmetrics "github.com/highgopress/highgopress/platform/metrics"
)

// The hubs' metrics, shared by every hub of a process (they add up).
var (
	// subscriptions are the open WatchCounts streams.
	subscriptions = platformmetrics.Register(prometheus.DefaultRegisterer, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hgp_counter_watch_subscriptions",
		Help: "Open WatchCounts streams on this replica.",
	}))
	// watchedItems are the items with at least one stream (one Redis
	// channel subscribed each).
	watchedItems = platformmetrics.Register(prometheus.DefaultRegisterer, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hgp_counter_watch_items",
		Help: "Items watched by at least one WatchCounts stream on this replica (Redis channels subscribed).",
	}))
	// refused counts streams refused by the per-replica or per-client cap.
	refused = platformmetrics.Register(prometheus.DefaultRegisterer, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hgp_counter_watch_refused_total",
		Help: "WatchCounts streams refused by the per-replica or per-client cap.",
	}))
)
