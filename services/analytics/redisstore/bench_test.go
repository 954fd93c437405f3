package redisstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/services/analytics/internal/antest"
	"github.com/highgopress/highgopress/services/analytics/redisstore"
)

// BenchmarkApply measures events per second into the windows: batches of
// 2,000 likes and unlikes (the ingest's default batch) by 10,000 users over
// 5,000 items, each a state change, applied by the Lua step.
func BenchmarkApply(b *testing.B) {
	rdb, prefix := antest.Redis(b)
	s := redisstore.New(logging.Discard(), rdb, redisstore.WithPrefix(prefix))
	ctx := context.Background()
	if err := s.LoadScripts(ctx); err != nil {
		b.Fatal(err)
	}
	const batch = 2000
	now := time.Now()
	liked := map[[2]int]bool{}
	seq := uint64(0)
	next := func() []*eventsv1.Event {
		evs := make([]*eventsv1.Event, batch)
		for i := range evs {
			seq++
			u, it := int(seq*7919%10000), int(seq*104729%5000)
			k := [2]int{u, it}
			liked[k] = !liked[k]
			evs[i] = antest.Like(liked[k], "article", fmt.Sprintf("item-%d", it), fmt.Sprintf("user-%d", u), antest.Version(now, seq), now)
		}
		return evs
	}
	b.ResetTimer()
	start := time.Now()
	events := 0
	for b.Loop() {
		b.StopTimer()
		evs := next()
		b.StartTimer()
		if _, err := s.Apply(ctx, evs); err != nil {
			b.Fatal(err)
		}
		events += len(evs)
	}
	b.ReportMetric(float64(events)/time.Since(start).Seconds(), "events/s")
}
