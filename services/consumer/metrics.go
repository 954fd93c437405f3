package consumer

import (
	"github.com/prometheus/client_golang/prometheus"

	platformmetrics "github.com/highgopress/highgopress/platform/metrics"
)

type metrics struct {
	events      *prometheus.CounterVec
	deadLetters prometheus.Counter
	batchSize   prometheus.Histogram
	batchTime   prometheus.Histogram
	lag         prometheus.Gauge
	errors      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hgp_consumer_events_total",
			Help: "Events consumed, by result: transition, increment, ignored (duplicate or stale), dead_letter.",
		}, []string{"result"}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hgp_consumer_dead_letters_total",
			Help: "Messages sent to the dead-letter topic.",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hgp_consumer_batch_size",
			Help:    "Messages per applied batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		batchTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hgp_consumer_batch_seconds",
			Help:    "Time to apply one batch in MySQL and commit its offsets.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hgp_consumer_lag",
			Help: "Messages behind the end of the partitions this reader consumes.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hgp_consumer_errors_total",
			Help: "Failed consumer operations, by operation; each is retried.",
		}, []string{"op"}),
	}
	if reg == nil {
		return m
	}
	m.events = platformmetrics.Register(reg, m.events)
	m.deadLetters = platformmetrics.Register(reg, m.deadLetters)
	m.batchSize = platformmetrics.Register(reg, m.batchSize)
	m.batchTime = platformmetrics.Register(reg, m.batchTime)
	m.lag = platformmetrics.Register(reg, m.lag)
	m.errors = platformmetrics.Register(reg, m.errors)
	return m
}
