// Package apistats counts the gateway's calls per procedure and result code
// in memory (atomic counters, no per-request I/O) and flushes the counts
// periodically to a Sink — the event pipeline's Kafka sink, which emits
// API_CALL events for the analytics service.
package apistats

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/highgopress/highgopress/platform/config"
)

// Stat is the number of calls of one procedure that ended with one code
// during one flush window.
type Stat struct {
	// ID is unique per (recorder, window, procedure, code) and stable when a
	// failed batch is published again, so a sink can deduplicate. It is
	// short and of fixed length (see statID) whatever the procedure's name.
	ID string
	// Procedure is the HTTP path, "/package.Service/Method" ("<unknown>"
	// for paths the gateway does not route, "<other>" past the cardinality
	// cap).
	Procedure string
	// Code is "ok" or a Connect code name ("resource_exhausted", …).
	Code string
	// Count is the number of calls (the event's delta).
	Count int64
	// Start and End bound the window the calls were counted in.
	Start, End time.Time
	// LatencyBuckets is the calls' latency histogram (LatencyBucket), nil
	// when none was measured: key b counts the calls whose latency in
	// microseconds lies in (2^((b-1)/8), 2^(b/8)], key 0 those of at most
	// 1 µs (the API_CALL event's latency_us_buckets).
	LatencyBuckets map[int32]int64
}

// Sink receives flushed counts. Publish must be safe to call again with the
// same stats after an error (IDs are stable), and must not keep the slice
// after returning. Flushes never overlap.
type Sink interface {
	Publish(ctx context.Context, stats []Stat) error
}

// Procedure names used for calls that are not counted by name.
const (
	UnknownProcedure = "<unknown>"
	OtherProcedure   = "<other>"
)

// numCodes covers "ok" (index 0) and Connect codes 1..16.
const numCodes = 17

// CodeOK is the code string of successful calls.
const CodeOK = "ok"

func codeString(i int) string {
	if i == 0 {
		return CodeOK
	}
	return connect.Code(i).String()
}

type counters struct {
	n [numCodes]atomic.Int64
	// lat holds each code's latency histogram, allocated on the code's
	// first measured call.
	lat [numCodes]atomic.Pointer[histogram]
}

// MaxLatencyBucket is the highest latency bucket: 2^36 µs (about 19
// hours); longer calls (streams) are counted in it.
const MaxLatencyBucket = 8 * 36

// histogram is a fixed array of bucket counters (exponential, factor
// 2^(1/8): Prometheus native histograms' schema 3).
type histogram [MaxLatencyBucket + 1]atomic.Int64

// LatencyBucket returns the bucket of a latency: 0 for at most 1 µs, else
// the b with 2^((b-1)/8) < µs <= 2^(b/8), at most MaxLatencyBucket.
func LatencyBucket(d time.Duration) int {
	us := float64(d) / float64(time.Microsecond)
	if us <= 1 {
		return 0
	}
	return min(int(math.Ceil(8*math.Log2(us))), MaxLatencyBucket)
}

func (c *counters) observe(idx int, d time.Duration) {
	h := c.lat[idx].Load()
	if h == nil {
		c.lat[idx].CompareAndSwap(nil, new(histogram))
		h = c.lat[idx].Load()
	}
	h[LatencyBucket(d)].Add(1)
}

// takeLatency swaps the code's histogram to zero and returns what it held
// (nil when nothing was measured).
func (c *counters) takeLatency(idx int) map[int32]int64 {
	h := c.lat[idx].Load()
	if h == nil {
		return nil
	}
	var out map[int32]int64
	for b := range h {
		if n := h[b].Swap(0); n != 0 {
			if out == nil {
				out = map[int32]int64{}
			}
			out[int32(b)] = n
		}
	}
	return out
}

// Config is read from HGP_APISTATS_FLUSH_INTERVAL (default 10s).
type Config struct {
	FlushInterval time.Duration
}

// ConfigFrom reads Config; errors are recorded on r.
func ConfigFrom(r *config.Reader) Config {
	return Config{FlushInterval: r.Duration("HGP_APISTATS_FLUSH_INTERVAL", DefaultConfig().FlushInterval, 100*time.Millisecond, time.Hour)}
}

// DefaultConfig returns the defaults (a flush every 10 s).
func DefaultConfig() Config {
	return Config{FlushInterval: 10 * time.Second}
}

// RecorderStats are the recorder's own counters, for metrics.
type RecorderStats struct {
	// Recorded calls, Published calls (sum of Count delivered to the sink),
	// Dropped calls (pending backlog over its cap while the sink failed).
	Recorded, Published, Dropped int64
	// PublishErrors counts failed Publish calls; Pending is the number of
	// stats waiting for a retry.
	PublishErrors uint64
	Pending       int
}

// Recorder counts calls and flushes them to a Sink.
type Recorder struct {
	logger *slog.Logger
	sink   Sink
	opts   options

	// procs is copy-on-write: the hot path is a lock-free map read.
	procs atomic.Pointer[map[string]*counters]
	mu    sync.Mutex // guards procs updates

	flushMu     sync.Mutex // one flush at a time; guards the fields below
	windowStart time.Time
	seq         uint64
	pending     []Stat

	recorded, published, dropped atomic.Int64
	publishErrors                atomic.Uint64
	pendingLen                   atomic.Int64
	closed                       atomic.Bool
	// interval is the flush interval in force; SetFlushInterval changes it
	// and wakes Run through reset.
	interval atomic.Int64
	reset    chan struct{}
}

// NewRecorder returns a Recorder publishing to sink every flush interval
// once Run is started.
func NewRecorder(logger *slog.Logger, sink Sink, cfg Config, opts ...Option) *Recorder {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 10 * time.Second
	}
	o.interval = cfg.FlushInterval
	if o.instance == "" {
		host, _ := os.Hostname()
		o.instance = fmt.Sprintf("%s-%d-%d", host, os.Getpid(), time.Now().UnixNano())
	}
	r := &Recorder{logger: logger, sink: sink, opts: o, windowStart: o.now(), reset: make(chan struct{}, 1)}
	r.interval.Store(int64(o.interval))
	empty := map[string]*counters{}
	r.procs.Store(&empty)
	return r
}

// statID names one stat: "api-" and 40 hex digits of a SHA-256 over the
// recorder instance, the flush sequence number, the code and the procedure.
// Unique for practical purposes (160 bits), stable across retries of the
// same batch, and 44 characters long — well within the event contract's
// event id limit (events.MaxEventID), however long host names or
// procedure paths get.
func statID(instance string, seq uint64, code, procedure string) string {
	h := sha256.New()
	for _, part := range []string{instance, strconv.FormatUint(seq, 10), code, procedure} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return "api-" + hex.EncodeToString(h.Sum(nil)[:20])
}

// OK is the code recorded for successful calls (Connect has no code 0).
const OK connect.Code = 0

// Record counts one call of procedure that ended with code (OK for success).
func (r *Recorder) Record(procedure string, code connect.Code) {
	r.counters(procedure).n[codeIndex(code)].Add(1)
	r.recorded.Add(1)
}

// RecordLatency counts one call of procedure that ended with code after d,
// adding d to the latency histogram of (procedure, code).
func (r *Recorder) RecordLatency(procedure string, code connect.Code, d time.Duration) {
	idx := codeIndex(code)
	c := r.counters(procedure)
	c.observe(idx, d)
	c.n[idx].Add(1)
	r.recorded.Add(1)
}

func codeIndex(code connect.Code) int {
	idx := int(code)
	if idx < 0 || idx >= numCodes {
		idx = int(connect.CodeUnknown)
	}
	return idx
}

// RecordError counts one call by its error (nil: OK).
func (r *Recorder) RecordError(procedure string, err error) {
	if err == nil {
		r.Record(procedure, OK)
		return
	}
	r.Record(procedure, connect.CodeOf(err))
}

func (r *Recorder) counters(procedure string) *counters {
	if r.opts.known != nil && !r.opts.known(procedure) {
		procedure = UnknownProcedure
	}
	if c, ok := (*r.procs.Load())[procedure]; ok {
		return c
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := *r.procs.Load()
	if c, ok := cur[procedure]; ok {
		return c
	}
	if len(cur) >= r.opts.maxProcedures && procedure != OtherProcedure {
		if c, ok := cur[OtherProcedure]; ok {
			return c
		}
		procedure = OtherProcedure
	}
	next := make(map[string]*counters, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	c := &counters{}
	next[procedure] = c
	r.procs.Store(&next)
	return c
}

// Stats returns the recorder's counters.
func (r *Recorder) Stats() RecorderStats {
	return RecorderStats{
		Recorded:      r.recorded.Load(),
		Published:     r.published.Load(),
		Dropped:       r.dropped.Load(),
		PublishErrors: r.publishErrors.Load(),
		Pending:       int(r.pendingLen.Load()),
	}
}

// Run flushes every interval until ctx is done, then flushes once more
// (bounded by the close timeout). Use it as a bootstrap worker, and call
// Close after the server stopped to flush what in-flight requests recorded.
func (r *Recorder) Run(ctx context.Context) error {
	t := time.NewTicker(r.FlushInterval())
	defer t.Stop()
	for {
		select {
		case <-r.reset:
			t.Reset(r.FlushInterval())
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.closeTimeout)
			defer cancel()
			if err := r.Flush(fctx); err != nil {
				r.logger.Warn("api stats: final flush failed", "err", err)
			}
			return nil
		case <-t.C:
			if err := r.Flush(ctx); err != nil && ctx.Err() == nil {
				r.logger.Warn("api stats: flush failed, will retry", "err", err, "pending", r.pendingLen.Load())
			}
		}
	}
}

// FlushInterval returns the flush interval in force.
func (r *Recorder) FlushInterval() time.Duration { return time.Duration(r.interval.Load()) }

// SetFlushInterval changes the flush interval at run time (values ≤ 0
// are ignored); the next flush is one new interval from now.
func (r *Recorder) SetFlushInterval(d time.Duration) {
	if d <= 0 || r.interval.Swap(int64(d)) == int64(d) {
		return
	}
	select {
	case r.reset <- struct{}{}:
	default: // a reset is already pending; it reads the newest interval
	}
}

// Close flushes everything counted so far (after the server stopped, so
// nothing is lost); the Sink is not closed.
func (r *Recorder) Close() error {
	r.closed.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.closeTimeout)
	defer cancel()
	if err := r.Flush(ctx); err != nil {
		return fmt.Errorf("api stats: final flush: %w", err)
	}
	return nil
}

// Flush publishes the counts since the last flush (and any batch a failed
// flush left pending). On error the stats stay pending for the next flush.
func (r *Recorder) Flush(ctx context.Context) error {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	now := r.opts.now()
	r.seq++
	batch := r.pending
	for proc, c := range *r.procs.Load() {
		for i := range numCodes {
			n := c.n[i].Swap(0)
			// Taken even when n is 0: a call racing with the flush may
			// have observed its latency before counting itself.
			lat := c.takeLatency(i)
			if n == 0 {
				continue
			}
			code := codeString(i)
			batch = append(batch, Stat{
				ID: statID(r.opts.instance, r.seq, code, proc), Procedure: proc, Code: code, Count: n,
				Start: r.windowStart, End: now, LatencyBuckets: lat,
			})
		}
	}
	r.windowStart = now
	if len(batch) == 0 {
		return nil
	}
	err := r.sink.Publish(ctx, batch)
	if err == nil {
		var total int64
		for _, s := range batch {
			total += s.Count
		}
		r.published.Add(total)
		r.pending = nil
		r.pendingLen.Store(0)
		return nil
	}
	r.publishErrors.Add(1)
	if over := len(batch) - r.opts.maxPending; over > 0 {
		var lost int64
		for _, s := range batch[:over] {
			lost += s.Count
		}
		r.dropped.Add(lost)
		r.logger.Error("api stats: sink failing, dropping oldest counts", "dropped_calls", lost)
		batch = append([]Stat(nil), batch[over:]...)
	}
	r.pending = batch
	r.pendingLen.Store(int64(len(batch)))
	return fmt.Errorf("api stats: publish %d stats: %w", len(batch), err)
}

// LogSink writes each flushed stat as a log line: the sink for
// configurations without Kafka.
type LogSink struct {
	Logger *slog.Logger
}

// Publish logs stats.
func (s LogSink) Publish(_ context.Context, stats []Stat) error {
	if s.Logger == nil {
		return errors.New("apistats: LogSink without a logger")
	}
	for _, st := range stats {
		s.Logger.Info("api calls", "procedure", st.Procedure, "code", st.Code, "count", st.Count,
			"window_start", st.Start, "window_end", st.End, "id", st.ID)
	}
	return nil
}
