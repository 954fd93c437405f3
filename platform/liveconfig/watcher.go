package liveconfig

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/metrics"
)

// Version identifies the document the current settings came from: Consul's
// ModifyIndex of the key (0: no document, environment only) and a short hash
// of its content.
type Version struct {
	Index uint64
	Hash  string
}

func (v Version) String() string {
	if v.Index == 0 {
		return "env"
	}
	return fmt.Sprintf("%d/%s", v.Index, v.Hash)
}

// Watcher follows one service's document with Consul blocking queries
// (GET /v1/kv/<key>?index=…&wait=…), validates every new version as a whole
// and hands accepted settings to apply. While Consul is unreachable, or after
// a rejected document, the last good settings stay.
type Watcher[T any] struct {
	logger *slog.Logger
	client *api.Client
	schema Schema[T]
	base   *config.Reader
	apply  func(T)
	opts   options

	mu       sync.Mutex
	current  T
	version  Version
	rejected atomic.Uint64
	lastErr  atomic.Pointer[string]
	ready    chan struct{}
	readyOne sync.Once

	mRejected *prometheus.CounterVec
	mApplied  *prometheus.CounterVec
	mVersion  *prometheus.GaugeVec
	mErrors   *prometheus.CounterVec
}

// NewWatcher returns a Watcher of schema's document. initial are the
// settings the service started with (from base, the environment); apply is
// called, from Run's goroutine, with every accepted change (also when the
// document is deleted: back to initial).
func NewWatcher[T any](logger *slog.Logger, client *api.Client, schema Schema[T], base *config.Reader, initial T, apply func(T), opts ...Option) *Watcher[T] {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	w := &Watcher[T]{
		logger:  logger.With("config_key", Key(schema.Name)),
		client:  client,
		schema:  schema,
		base:    base,
		apply:   apply,
		opts:    o,
		current: initial,
		ready:   make(chan struct{}),
		mRejected: metrics.Register(o.reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hgp_config_rejected_total",
			Help: "Run-time configuration documents rejected by validation (the last good configuration stayed).",
		}, []string{"service"})),
		mApplied: metrics.Register(o.reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hgp_config_applied_total",
			Help: "Run-time configuration documents accepted and applied.",
		}, []string{"service"})),
		mVersion: metrics.Register(o.reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hgp_config_version",
			Help: "Consul ModifyIndex of the run-time configuration document in force (0: environment only).",
		}, []string{"service"})),
		mErrors: metrics.Register(o.reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hgp_config_watch_errors_total",
			Help: "Failed Consul KV queries of the configuration watcher (the last good configuration stayed).",
		}, []string{"service"})),
	}
	w.mRejected.WithLabelValues(schema.Name)
	w.mVersion.WithLabelValues(schema.Name).Set(0)
	return w
}

// Current returns the settings in force and the document they came from.
func (w *Watcher[T]) Current() (T, Version) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.current, w.version
}

// Rejected returns how many documents were rejected, and the last reason.
func (w *Watcher[T]) Rejected() (uint64, string) {
	msg := ""
	if p := w.lastErr.Load(); p != nil {
		msg = *p
	}
	return w.rejected.Load(), msg
}

// Ready is closed once Consul answered the first query (and its document,
// if any, was applied or rejected).
func (w *Watcher[T]) Ready() <-chan struct{} { return w.ready }

// Run follows the document until ctx is done (it returns nil then). Errors
// never stop it: they are logged, counted and retried with backoff.
func (w *Watcher[T]) Run(ctx context.Context) error {
	var index uint64
	failures := 0
	for {
		pair, meta, err := w.query(ctx, index)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			failures++
			w.mErrors.WithLabelValues(w.schema.Name).Inc()
			wait := min(w.opts.minBackoff<<min(failures-1, 6), w.opts.maxBackoff)
			if failures == 1 || failures%20 == 0 {
				w.logger.Warn("consul unreachable, keeping the last good configuration",
					"err", err, "failures", failures, "retry_in", wait, "version", w.versionString())
			}
			index = 0
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			continue
		}
		if failures > 0 {
			w.logger.Info("consul reachable again", "after_failures", failures)
		}
		failures = 0
		if meta.LastIndex < index {
			index = 0 // agent restarted: start over
		} else {
			index = meta.LastIndex
		}
		w.consider(pair)
		w.readyOne.Do(func() { close(w.ready) })
	}
}

func (w *Watcher[T]) query(ctx context.Context, index uint64) (*api.KVPair, *api.QueryMeta, error) {
	qctx, cancel := context.WithTimeout(ctx, w.opts.wait+w.opts.wait/16+w.opts.callTimeout)
	defer cancel()
	q := (&api.QueryOptions{WaitIndex: index, WaitTime: w.opts.wait}).WithContext(qctx)
	pair, meta, err := w.client.KV().Get(Key(w.schema.Name), q)
	if err != nil {
		return nil, nil, fmt.Errorf("liveconfig: watch %s: %w", Key(w.schema.Name), err)
	}
	return pair, meta, nil
}

// consider validates the document pair holds (nil: none) and applies it
// when it is new and valid.
func (w *Watcher[T]) consider(pair *api.KVPair) {
	var raw []byte
	v := Version{}
	if pair != nil {
		raw = pair.Value
		v.Index = pair.ModifyIndex
		sum := sha256.Sum256(raw)
		v.Hash = hex.EncodeToString(sum[:4])
	}
	w.mu.Lock()
	same := w.version == v
	w.mu.Unlock()
	if same {
		return
	}
	doc, err := ParseDocument(raw)
	var settings T
	if err == nil {
		settings, err = w.schema.Validate(w.base, doc)
	}
	if err != nil {
		w.rejected.Add(1)
		msg := err.Error()
		w.lastErr.Store(&msg)
		w.mRejected.WithLabelValues(w.schema.Name).Inc()
		w.logger.Error("configuration document rejected, keeping the last good configuration",
			"err", err, "rejected_version", v.String(), "version", w.versionString())
		w.mu.Lock()
		// remember it, so an unchanged bad document is reported once
		w.version = v
		w.mu.Unlock()
		return
	}
	w.mu.Lock()
	w.current, w.version = settings, v
	w.mu.Unlock()
	w.apply(settings)
	w.mApplied.WithLabelValues(w.schema.Name).Inc()
	w.mVersion.WithLabelValues(w.schema.Name).Set(float64(v.Index))
	w.logger.Info("configuration applied", "version", v.String(), "overrides", doc.keysString())
}

func (w *Watcher[T]) versionString() string {
	_, v := w.Current()
	return v.String()
}

func (d Document) keysString() string {
	out := ""
	for i, k := range sortedKeys(d) {
		if i > 0 {
			out += ","
		}
		out += k
	}
	return out
}
