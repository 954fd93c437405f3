package relay

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	depth       prometheus.Gauge
	latency     prometheus.Histogram
	writeTime   prometheus.Histogram
	relayed     prometheus.Counter
	deadLetters prometheus.Counter
	errors      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		depth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hgp_relay_outbox_depth",
			Help: "Entries in the Redis outbox stream not yet moved to Kafka.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hgp_relay_latency_seconds",
			Help:    "Time from the outbox append to the Kafka acknowledgement, per event.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		writeTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hgp_relay_kafka_write_seconds",
			Help:    "Duration of one acknowledged Kafka write of a batch.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		relayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hgp_relay_events_total",
			Help: "Outbox entries written to Kafka and removed from the outbox.",
		}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hgp_relay_dead_letters_total",
			Help: "Outbox entries that could not be converted and went to the dead-letter stream.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hgp_relay_errors_total",
			Help: "Failed relay operations, by operation; each is retried.",
		}, []string{"op"}),
	}
	if reg == nil {
		return m
	}
	m.depth = register(reg, m.depth)
	m.latency = register(reg, m.latency)
	m.writeTime = register(reg, m.writeTime)
	m.relayed = register(reg, m.relayed)
	m.deadLetters = register(reg, m.deadLetters)
	m.errors = register(reg, m.errors)
	return m
}

// register registers c, or returns the collector already registered under
// the same name (several relays in one process share their metrics).
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
