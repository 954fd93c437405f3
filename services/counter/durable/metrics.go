package durable

import (
	"github.com/prometheus/client_golang/prometheus"

	platformmetrics "github.com/highgopress/highgopress/platform/metrics"
)

// Metrics of the rebuild reads, in the default registry (shared by every
// Store of a process).
var (
	snapshotReads = platformmetrics.Register(prometheus.DefaultRegisterer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hgp_rebuild_snapshot_reads_total",
		Help: "Snapshot transactions read from MySQL to rebuild state missing from Redis, by kind (item, user); concurrent loads share one.",
	}, []string{"kind"}))
	snapshotKeys = platformmetrics.Register(prometheus.DefaultRegisterer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hgp_rebuild_snapshots_total",
		Help: "Items and users whose snapshot was read from MySQL, by kind (item, user).",
	}, []string{"kind"}))
	catchUpWaits = platformmetrics.Register(prometheus.DefaultRegisterer, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hgp_rebuild_catch_up_waits_total",
		Help: "Waits for the consumer to apply what is in Kafka before a snapshot read; concurrent reads share one.",
	}))
	catchUpTimeouts = platformmetrics.Register(prometheus.DefaultRegisterer, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hgp_rebuild_catch_up_timeouts_total",
		Help: "Catch-up waits that ran out (HGP_COUNTER_REBUILD_WAIT) or failed; the snapshot was read anyway.",
	}))
)
