package relay

import (
	"github.com/prometheus/client_golang/prometheus"

	platformmetrics "github.com/highgopress/highgopress/platform/metrics"
)

type metrics struct {
	depth       prometheus.Gauge
	latency     prometheus.Histogram
	writeTime   prometheus.Histogram
	relayed     prometheus.Counter
	deadLetters prometheus.Counter
	claimedDead prometheus.Counter
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
		claimedDead: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hgp_relay_claimed_dead_total",
			Help: "Pending outbox entries taken over from relays whose liveness key expired.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hgp_relay_errors_total",
			Help: "Failed relay operations, by operation; each is retried.",
		}, []string{"op"}),
	}
	if reg == nil {
		return m
	}
	m.depth = platformmetrics.Register(reg, m.depth)
	m.latency = platformmetrics.Register(reg, m.latency)
	m.writeTime = platformmetrics.Register(reg, m.writeTime)
	m.relayed = platformmetrics.Register(reg, m.relayed)
	m.deadLetters = platformmetrics.Register(reg, m.deadLetters)
	m.claimedDead = platformmetrics.Register(reg, m.claimedDead)
	m.errors = platformmetrics.Register(reg, m.errors)
	return m
}
