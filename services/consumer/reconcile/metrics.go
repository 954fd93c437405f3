package reconcile

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
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
	m.fields = register(reg, m.fields)
	m.abs = register(reg, m.abs)
	m.repaired = register(reg, m.repaired)
	m.runs = register(reg, m.runs)
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
