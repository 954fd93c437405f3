package events

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	platformmetrics "github.com/highgopress/highgopress/platform/metrics"
)

// groupLag is every lag monitor's gauge: one series per (group, topic,
// partition), bounded by the topic's partition count per group.
var (
	groupLag = platformmetrics.Register(prometheus.DefaultRegisterer, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hgp_kafka_consumer_group_lag",
		Help: "Messages of a partition not yet committed by the consumer group (end offset minus committed offset), sampled from the brokers.",
	}, []string{"group", "topic", "partition"}))
	lagErrors = platformmetrics.Register(prometheus.DefaultRegisterer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hgp_kafka_consumer_group_lag_errors_total",
		Help: "Failed samples of a consumer group's lag (the gauge keeps its last values).",
	}, []string{"group"}))
)

// DefaultLagInterval is how often a LagMonitor samples by default.
const DefaultLagInterval = 10 * time.Second

// LagMonitor samples a consumer group's lag per partition from the brokers
// (GroupOffsets: the end offset and the group's committed offset of each
// partition) into hgp_kafka_consumer_group_lag. The consumers commit after
// applying, so it counts the messages not applied yet, whichever member
// owns the partition, and it keeps growing while the consumers are stuck
// (a lag read from the members' own fetches would freeze then). Every
// replica samples the same numbers: aggregate with max, not sum.
type LagMonitor struct {
	logger   *slog.Logger
	brokers  []string
	group    string
	topic    string
	interval time.Duration
}

// NewLagMonitor returns a monitor of group on topic.
func NewLagMonitor(logger *slog.Logger, brokers []string, group, topic string, opts ...LagOption) *LagMonitor {
	m := &LagMonitor{logger: logger, brokers: brokers, group: group, topic: topic, interval: DefaultLagInterval}
	for _, opt := range opts {
		opt(m)
	}
	return m
}

// Run samples at once, then every interval, until ctx ends (use it as a
// bootstrap worker); it returns nil then and removes the group's series.
// Failed samples are logged and counted, never fatal.
func (m *LagMonitor) Run(ctx context.Context) error {
	defer groupLag.DeletePartialMatch(prometheus.Labels{"group": m.group, "topic": m.topic})
	errs := lagErrors.WithLabelValues(m.group)
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		if err := m.Sample(ctx); err != nil && ctx.Err() == nil {
			errs.Inc()
			m.logger.Debug("sampling the consumer group's lag", "group", m.group, "topic", m.topic, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sample reads the group's offsets once and sets the gauge.
func (m *LagMonitor) Sample(ctx context.Context) error {
	ends, committed, err := GroupOffsets(ctx, m.brokers, m.group, m.topic)
	if err != nil {
		return err
	}
	for p, end := range ends {
		groupLag.WithLabelValues(m.group, m.topic, strconv.Itoa(p)).Set(float64(max(end-committed[p], 0)))
	}
	return nil
}
