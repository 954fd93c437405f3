package consumer

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
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
	m.events = register(reg, m.events)
	m.deadLetters = register(reg, m.deadLetters)
	m.batchSize = register(reg, m.batchSize)
	m.batchTime = register(reg, m.batchTime)
	m.lag = register(reg, m.lag)
	m.errors = register(reg, m.errors)
	return m
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}
