package reconcile

import (
	"github.com/prometheus/client_golang/prometheus"

	platformmetrics "github.com/highgopress/highgopress/platform/metrics"
)

type metrics struct {
	fields   prometheus.Gauge
	abs      prometheus.Gauge
	repaired prometheus.Counter
	runs     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		fields: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hgp_reconcile_drift_fields",
			Help: "Redis count fields that differed from MySQL at the last check (includes events in flight unless quiescent).",
		}),
		abs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hgp_reconcile_drift_abs",
			Help: "Summed absolute difference between Redis and MySQL counts at the last check.",
		}),
		repaired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hgp_reconcile_repaired_total",
			Help: "Redis keys rebuilt or fields corrected from MySQL.",
		}),
		runs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hgp_reconcile_checks_total",
			Help: "Reconciliation checks run.",
		}),
	}
	if reg == nil {
		return m
	}
	m.fields = platformmetrics.Register(reg, m.fields)
	m.abs = platformmetrics.Register(reg, m.abs)
	m.repaired = platformmetrics.Register(reg, m.repaired)
	m.runs = platformmetrics.Register(reg, m.runs)
	return m
}
