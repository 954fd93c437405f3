package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"golang.org/x/time/rate"
)

// Watcher follows the passing instances of one service with Consul blocking
// queries (GET /v1/health/service/<name>?passing&index=…&wait=…). It is a
// Source for a Balancer. When Consul is unreachable it keeps serving the last
// instances it learned, logs, counts the error and retries with backoff.
type Watcher struct {
	logger  *slog.Logger
	client  *api.Client
	service string
	opts    watchOptions

	set     atomic.Pointer[Set]
	ready   chan struct{}
	readyMu sync.Once

	queries   atomic.Uint64
	updates   atomic.Uint64
	errors    atomic.Uint64
	stale     atomic.Bool
	lastOK    atomic.Int64 // unix nanos of the last successful query
	lastError atomic.Pointer[string]
}

// WatchStats are the watcher's counters, for metrics.
type WatchStats struct {
	Service string
	// Queries is the number of completed Consul queries (successful or not).
	Queries uint64
	// Updates is how many times the instance set changed.
	Updates uint64
	// Errors is how many queries failed (Consul unreachable, 5xx…).
	Errors uint64
	// Stale is true while the last query failed: Instances are the last known.
	Stale bool
	// LastSuccess is when Consul last answered.
	LastSuccess time.Time
	LastError   string
	Instances   int
}

// NewWatcher returns a Watcher for service; call Run (for example as a
// bootstrap worker) to start following Consul.
func NewWatcher(logger *slog.Logger, client *api.Client, service string, opts ...WatchOption) *Watcher {
	o := defaultWatchOptions()
	for _, opt := range opts {
		opt(&o)
	}
	return &Watcher{
		logger:  logger.With("watch_service", service),
		client:  client,
		service: service,
		opts:    o,
		ready:   make(chan struct{}),
	}
}

// Service returns the watched service name.
func (w *Watcher) Service() string { return w.service }

// Current returns the latest known instance set (nil before Consul first
// answered). It never blocks.
func (w *Watcher) Current() *Set { return w.set.Load() }

// Instances returns the latest known healthy instances.
func (w *Watcher) Instances() []Instance {
	if s := w.set.Load(); s != nil {
		return s.Instances
	}
	return nil
}

// Ready is closed once Consul answered the first query.
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

// Stats returns the watcher's counters.
func (w *Watcher) Stats() WatchStats {
	st := WatchStats{
		Service: w.service,
		Queries: w.queries.Load(),
		Updates: w.updates.Load(),
		Errors:  w.errors.Load(),
		Stale:   w.stale.Load(),
	}
	if ns := w.lastOK.Load(); ns != 0 {
		st.LastSuccess = time.Unix(0, ns)
	}
	if e := w.lastError.Load(); e != nil {
		st.LastError = *e
	}
	st.Instances = len(w.Instances())
	return st
}

// Run follows Consul until ctx is done; it returns nil then. Errors never
// stop it: they are logged, counted and retried with backoff.
func (w *Watcher) Run(ctx context.Context) error {
	limiter := rate.NewLimiter(rate.Every(w.opts.minInterval), 1)
	var index uint64
	failures := 0
	for {
		if err := limiter.Wait(ctx); err != nil {
			return nil //nolint:nilerr // ctx done: normal stop
		}
		entries, meta, err := w.query(ctx, index)
		if ctx.Err() != nil {
			return nil
		}
		w.queries.Add(1)
		if err != nil {
			failures++
			w.errors.Add(1)
			msg := err.Error()
			w.lastError.Store(&msg)
			wasStale := w.stale.Swap(true)
			wait := backoff(failures, w.opts.maxBackoff)
			attrs := []any{"err", err, "failures", failures, "retry_in", wait, "kept_instances", len(w.Instances())}
			if !wasStale || failures%20 == 0 {
				w.logger.Warn("consul unreachable, keeping last known instances", attrs...)
			} else {
				w.logger.Debug("consul still unreachable", attrs...)
			}
			// A failed call may have been a broken blocking query: start
			// over with a fresh (non-blocking) one.
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
		w.stale.Store(false)
		w.lastOK.Store(time.Now().UnixNano())
		w.apply(entries)
		// Consul: if the index goes backwards (agent restart), reset it.
		switch {
		case meta.LastIndex < index:
			index = 0
		default:
			index = meta.LastIndex
		}
	}
}

func (w *Watcher) query(ctx context.Context, index uint64) ([]*api.ServiceEntry, *api.QueryMeta, error) {
	// Bound the HTTP call: Consul adds up to wait/16 of jitter.
	timeout := w.opts.waitTime + w.opts.waitTime/16 + w.opts.callTimeout
	qctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	q := &api.QueryOptions{WaitIndex: index, WaitTime: w.opts.waitTime, AllowStale: w.opts.allowStale}
	entries, meta, err := w.client.Health().Service(w.service, w.opts.tag, true, q.WithContext(qctx))
	if err != nil {
		return nil, nil, fmt.Errorf("discovery: watch %s: %w", w.service, err)
	}
	return entries, meta, nil
}

func (w *Watcher) apply(entries []*api.ServiceEntry) {
	instances := make([]Instance, 0, len(entries))
	for _, e := range entries {
		if e.Service == nil {
			continue
		}
		addr := e.Service.Address
		if addr == "" && e.Node != nil {
			addr = e.Node.Address
		}
		if addr == "" || e.Service.Port <= 0 {
			continue
		}
		in := Instance{
			ID:      e.Service.ID,
			Address: addr,
			Port:    e.Service.Port,
			Tags:    slices.Clone(e.Service.Tags),
			Meta:    e.Service.Meta,
		}
		in.URL = &url.URL{Scheme: w.opts.scheme, Host: in.HostPort()}
		instances = append(instances, in)
	}
	slices.SortFunc(instances, func(a, b Instance) int {
		if a.ID != b.ID {
			if a.ID < b.ID {
				return -1
			}
			return 1
		}
		return 0
	})
	old := w.set.Load()
	if old != nil && sameInstances(old.Instances, instances) {
		w.readyMu.Do(func() { close(w.ready) })
		return
	}
	var version uint64 = 1
	if old != nil {
		version = old.Version + 1
	}
	w.set.Store(&Set{Version: version, Instances: instances})
	w.updates.Add(1)
	ids := make([]string, len(instances))
	for i, in := range instances {
		ids[i] = in.ID + "@" + in.HostPort()
	}
	w.logger.Info("healthy instances changed", "count", len(instances), "instances", ids, "version", strconv.FormatUint(version, 10))
	w.readyMu.Do(func() { close(w.ready) })
}
