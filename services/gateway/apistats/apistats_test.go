package apistats

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
)

// memSink collects published stats; failN makes the first N calls fail.
type memSink struct {
	mu     sync.Mutex
	stats  []Stat
	calls  int
	failN  int
	seenID map[string]bool
	// failedIDs are the ids of stats offered in failed calls.
	failedIDs []string
}

func (s *memSink) Publish(_ context.Context, stats []Stat) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.calls <= s.failN {
		for _, st := range stats {
			s.failedIDs = append(s.failedIDs, st.ID)
		}
		return errors.New("broker down")
	}
	if s.seenID == nil {
		s.seenID = map[string]bool{}
	}
	for _, st := range stats {
		if s.seenID[st.ID] {
			return fmt.Errorf("duplicate id %s", st.ID)
		}
		s.seenID[st.ID] = true
	}
	s.stats = append(s.stats, stats...)
	return nil
}

func (s *memSink) totals() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int64{}
	for _, st := range s.stats {
		out[st.Procedure+" "+st.Code] += st.Count
	}
	return out
}

func TestCountsExactUnderConcurrency(t *testing.T) {
	sink := &memSink{}
	rec := NewRecorder(logging.Discard(), sink, Config{FlushInterval: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- rec.Run(ctx) }()

	procs := []string{"/a.v1.S/Like", "/a.v1.S/GetCounts", "/a.v1.S/Follow"}
	codes := []connect.Code{OK, connect.CodeResourceExhausted, connect.CodeNotFound, connect.CodeUnavailable}
	const workers, perWorker = 8, 5000
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			for i := range perWorker {
				rec.Record(procs[(g+i)%len(procs)], codes[i%len(codes)])
			}
		})
	}
	wg.Wait()
	// Before shutdown: the periodic flush alone must publish everything.
	testenv.Eventually(t, 10*time.Second, "the periodic flush to publish everything", func() bool {
		return rec.Stats().Published == workers*perWorker
	})
	cancel()
	if err := <-runDone; err != nil {
		t.Fatal(err)
	}
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{}
	for g := range workers {
		for i := range perWorker {
			want[procs[(g+i)%len(procs)]+" "+codeString(int(codes[i%len(codes)]))]++
		}
	}
	got := sink.totals()
	if len(got) != len(want) {
		t.Fatalf("got %d keys, want %d: %v", len(got), len(want), got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %d, want %d", k, got[k], v)
		}
	}
	st := rec.Stats()
	if st.Recorded != workers*perWorker || st.Published != workers*perWorker || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestShutdownFlushLosesNothing(t *testing.T) {
	sink := &memSink{}
	rec := NewRecorder(logging.Discard(), sink, Config{FlushInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- rec.Run(ctx) }()
	for range 1234 {
		rec.Record("/a.v1.S/Like", OK)
	}
	cancel() // graceful shutdown: the worker flushes once more
	if err := <-runDone; err != nil {
		t.Fatal(err)
	}
	if got := sink.totals()["/a.v1.S/Like ok"]; got != 1234 {
		t.Fatalf("after worker stop: %d, want 1234", got)
	}
	// A request that finished while the server drained is flushed by Close.
	rec.RecordError("/a.v1.S/Like", connect.NewError(connect.CodeInternal, errors.New("x")))
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	if got := sink.totals()["/a.v1.S/Like internal"]; got != 1 {
		t.Fatalf("after Close: %d, want 1", got)
	}
}

func TestFailedPublishIsRetriedWithStableIDs(t *testing.T) {
	sink := &memSink{failN: 2}
	rec := NewRecorder(logging.Discard(), sink, Config{FlushInterval: time.Hour}, WithInstance("gw1"))
	ctx := context.Background()
	rec.Record("/a.v1.S/Like", OK)
	if err := rec.Flush(ctx); err == nil {
		t.Fatal("want error from failing sink")
	}
	rec.Record("/a.v1.S/Like", OK)
	if err := rec.Flush(ctx); err == nil {
		t.Fatal("want error from failing sink")
	}
	if st := rec.Stats(); st.Pending != 2 || st.PublishErrors != 2 {
		t.Fatalf("stats %+v", st)
	}
	if err := rec.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := sink.totals()["/a.v1.S/Like ok"]; got != 2 {
		t.Fatalf("published %d, want 2", got)
	}
	for _, st := range sink.stats {
		if !strings.HasPrefix(st.ID, "api-") || len(st.ID) != 44 || st.Start.After(st.End) {
			t.Fatalf("stat %+v", st)
		}
		if !slices.Contains(sink.failedIDs, st.ID) {
			t.Fatalf("published id %s was not the one offered before (%v): ids must be stable across retries", st.ID, sink.failedIDs)
		}
	}
	if st := rec.Stats(); st.Pending != 0 || st.Published != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPendingCapDropsOldestAndCounts(t *testing.T) {
	sink := &memSink{failN: 1 << 30}
	rec := NewRecorder(logging.Discard(), sink, Config{FlushInterval: time.Hour}, WithMaxPending(2))
	for i := range 3 {
		rec.Record(fmt.Sprintf("/a.v1.S/M%d", i), OK)
		rec.Record(fmt.Sprintf("/a.v1.S/M%d", i), OK)
		_ = rec.Flush(context.Background())
	}
	st := rec.Stats()
	if st.Pending != 2 || st.Dropped != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCardinalityIsBounded(t *testing.T) {
	sink := &memSink{}
	known := func(p string) bool { return strings.HasPrefix(p, "/a.v1.S/") }
	rec := NewRecorder(logging.Discard(), sink, Config{}, WithKnownProcedures(known), WithMaxProcedures(3))
	for i := range 100 {
		rec.Record(fmt.Sprintf("/random/%d", i), connect.CodeUnimplemented)
		rec.Record(fmt.Sprintf("/a.v1.S/M%d", i), OK)
	}
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	got := sink.totals()
	if got[UnknownProcedure+" unimplemented"] != 100 {
		t.Fatalf("unknown: %v", got)
	}
	if len(got) > 4 || got[OtherProcedure+" ok"] == 0 {
		t.Fatalf("table not bounded: %v", got)
	}
	var total int64
	for _, v := range got {
		total += v
	}
	if total != 200 {
		t.Fatalf("total %d, want 200 (capped, not lost)", total)
	}
}

func TestLogSink(t *testing.T) {
	var buf bytes.Buffer
	s := LogSink{Logger: slog.New(slog.NewJSONHandler(&buf, nil))}
	err := s.Publish(context.Background(), []Stat{{ID: "x", Procedure: "/a.v1.S/Like", Code: "ok", Count: 3}})
	if err != nil || !strings.Contains(buf.String(), `"count":3`) || !strings.Contains(buf.String(), `"procedure":"/a.v1.S/Like"`) {
		t.Fatalf("%v %s", err, buf.String())
	}
	if (LogSink{}).Publish(context.Background(), nil) == nil {
		t.Fatal("nil logger accepted")
	}
}

func TestConfigFrom(t *testing.T) {
	r := config.FromMap(map[string]string{"HGP_APISTATS_FLUSH_INTERVAL": "2s"})
	if c := ConfigFrom(r); c.FlushInterval != 2*time.Second || r.Err() != nil {
		t.Fatalf("%+v %v", c, r.Err())
	}
	bad := config.FromMap(map[string]string{"HGP_APISTATS_FLUSH_INTERVAL": "soon"})
	ConfigFrom(bad)
	if err := bad.Err(); err == nil || !strings.Contains(err.Error(), "HGP_APISTATS_FLUSH_INTERVAL") {
		t.Fatalf("error %v", err)
	}
}

// BenchmarkRecord is the per-request cost of counting.
func BenchmarkRecord(b *testing.B) {
	rec := NewRecorder(logging.Discard(), &memSink{}, Config{})
	var i atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec.Record("/highgopress.counter.v1.CounterService/Like", connect.Code(i.Add(1)%3))
		}
	})
}

// TestLatencyBucket: the bucket bounds of schema 3 (factor 2^(1/8)).
func TestLatencyBucket(t *testing.T) {
	cases := []struct {
		d    time.Duration
		want int
	}{
		{0, 0},
		{time.Microsecond, 0},
		{time.Microsecond + 1, 1},           // just above 1 µs: (1, 2^(1/8)]
		{1090 * time.Nanosecond, 1},         // 2^(1/8) ≈ 1.0905 µs
		{1091 * time.Nanosecond, 2},         // just above it
		{2 * time.Microsecond, 8},           // 2^(8/8), upper bound included
		{2*time.Microsecond + 1, 9},         // just above
		{time.Millisecond, 80},              // 8·log2(1000) ≈ 79.73 → 80
		{1024 * time.Microsecond, 80},       // 2^10 µs = 2^(80/8), included
		{1024*time.Microsecond + 1, 81},     // just above
		{100 * time.Hour, MaxLatencyBucket}, // past the top: clamped
	}
	for _, c := range cases {
		if got := LatencyBucket(c.d); got != c.want {
			t.Errorf("LatencyBucket(%v) = %d; want %d", c.d, got, c.want)
		}
	}
}

// TestLatencyHistogramFlushed: each (procedure, code) flushes its own
// histogram with the count, and a flush starts the next window at zero.
func TestLatencyHistogramFlushed(t *testing.T) {
	sink := &memSink{}
	r := NewRecorder(logging.Discard(), sink, Config{FlushInterval: time.Hour})
	r.RecordLatency("/a.v1.S/M", OK, 500*time.Nanosecond)
	r.RecordLatency("/a.v1.S/M", OK, 3*time.Millisecond)
	r.RecordLatency("/a.v1.S/M", OK, 3*time.Millisecond)
	r.RecordLatency("/a.v1.S/M", connect.CodeUnavailable, 4*time.Second)
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := map[string]map[int32]int64{}
	for _, st := range sink.stats {
		var sum int64
		for _, n := range st.LatencyBuckets {
			sum += n
		}
		if sum != st.Count {
			t.Errorf("%s %s: histogram holds %d calls, count is %d", st.Procedure, st.Code, sum, st.Count)
		}
		got[st.Code] = st.LatencyBuckets
	}
	b3ms := int32(LatencyBucket(3 * time.Millisecond))
	if ok := got["ok"]; len(ok) != 2 || ok[0] != 1 || ok[b3ms] != 2 {
		t.Errorf("ok histogram = %v; want {0:1, %d:2}", ok, b3ms)
	}
	if un := got["unavailable"]; len(un) != 1 || un[int32(LatencyBucket(4*time.Second))] != 1 {
		t.Errorf("unavailable histogram = %v", un)
	}
	sink.stats = nil
	r.RecordLatency("/a.v1.S/M", OK, time.Microsecond)
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(sink.stats) != 1 || len(sink.stats[0].LatencyBuckets) != 1 || sink.stats[0].LatencyBuckets[0] != 1 {
		t.Errorf("second window: %+v", sink.stats)
	}
}

func BenchmarkRecordLatency(b *testing.B) {
	rec := NewRecorder(logging.Discard(), &memSink{}, Config{})
	var i atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := i.Add(1)
			rec.RecordLatency("/highgopress.counter.v1.CounterService/Like", connect.Code(n%3), time.Duration(n%5000)*time.Microsecond)
		}
	})
}

// TestSetFlushIntervalAtRunTime: a recorder flushing every hour starts
// flushing at the new interval once SetFlushInterval shortens it.
func TestSetFlushIntervalAtRunTime(t *testing.T) {
	sink := &memSink{}
	rec := NewRecorder(logging.Discard(), sink, Config{FlushInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- rec.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-runDone; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	rec.Record("/a.v1.S/Like", OK)
	rec.SetFlushInterval(20 * time.Millisecond)
	if rec.FlushInterval() != 20*time.Millisecond {
		t.Fatalf("FlushInterval = %v", rec.FlushInterval())
	}
	testenv.Eventually(t, 20*time.Second, "a flush at the new interval", func() bool {
		return sink.totals()["/a.v1.S/Like ok"] == 1
	})
	rec.SetFlushInterval(0) // ignored
	if rec.FlushInterval() != 20*time.Millisecond {
		t.Fatalf("SetFlushInterval(0) changed the interval to %v", rec.FlushInterval())
	}
}
