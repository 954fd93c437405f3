package settle

import (
	"github.com/prometheus/client_golang/prometheus"

	platformmetrics "github.com/highgopress/highgopress/platform/metrics"
)

type metrics struct {
	queued  prometheus.Gauge
	targets *prometheus.CounterVec
	changes *prometheus.CounterVec
	wait    prometheus.Histogram
	errors  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hgp_settle_queued",
			Help: "Rebuilt items and users waiting to be settled.",
		}),
		targets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hgp_settle_targets_total",
			Help: "Rebuilt items and users taken from the settle queue, by outcome (settled, skipped: settled already, postponed, failed).",
		}, []string{"result"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hgp_settle_changes_total",
			Help: "Corrections settling made to rebuilt state: net change of like and follow counts (absolute), metric fields corrected.",
		}, []string{"what"}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hgp_settle_catch_up_seconds",
			Help:    "Wait for the consumer to apply what was in Kafka before settling.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hgp_settle_errors_total",
			Help: "Failed settle rounds (not those postponed because the consumer is behind); each is retried.",
		}),
	}
	if reg == nil {
		return m
	}
	m.queued = platformmetrics.Register(reg, m.queued)
	m.targets = platformmetrics.Register(reg, m.targets)
	m.changes = platformmetrics.Register(reg, m.changes)
	m.wait = platformmetrics.Register(reg, m.wait)
	m.errors = platformmetrics.Register(reg, m.errors)
	return m
}
