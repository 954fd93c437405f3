package events_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/platform/testenv/pipetest"
)

// lagSeries returns the group's hgp_kafka_consumer_group_lag series by
// partition.
func lagSeries(t *testing.T, group string) map[string]float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "hgp_kafka_consumer_group_lag" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["group"] == group {
				out[labels["partition"]] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// TestLagMonitorPerPartition: on a topic of 3 partitions, 6 messages not
// consumed by the group show as lag summing to 6 over one series per
// partition; once the group committed them the lag is 0 everywhere; when
// the monitor stops, its series go.
func TestLagMonitorPerPartition(t *testing.T) {
	brokers := strings.Split(testenv.KafkaBrokers(t), ",")
	topic := pipetest.Topic(t, brokers, 3)
	group := "lag-" + pipetest.Suffix()
	ctx := context.Background()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Balancer: &kafka.RoundRobin{}, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	var msgs []kafka.Message
	for i := range 6 {
		msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprint("k", i)), Value: []byte("v")})
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	m := events.NewLagMonitor(logging.Discard(), brokers, group, topic, events.WithLagInterval(100*time.Millisecond))
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(rctx) }()
	var runErr error
	stopped := false
	stopMonitor := func() error {
		if !stopped {
			stopped = true
			stop()
			runErr = <-done
		}
		return runErr
	}
	defer func() { _ = stopMonitor() }()
	testenv.Eventually(t, 30*time.Second, "lag of 6 over 3 partitions", func() bool {
		s := lagSeries(t, group)
		return len(s) == 3 && s["0"]+s["1"]+s["2"] == 6
	})

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, GroupID: group, Topic: topic, StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for range 6 {
		msg, err := r.FetchMessage(fctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.CommitMessages(fctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 30*time.Second, "lag 0 on every partition once committed", func() bool {
		s := lagSeries(t, group)
		return len(s) == 3 && s["0"] == 0 && s["1"] == 0 && s["2"] == 0
	})
	if err := stopMonitor(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if s := lagSeries(t, group); len(s) != 0 {
		t.Fatalf("series left after the monitor stopped: %v", s)
	}
}
