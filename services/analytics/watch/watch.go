// Package watch fans rankings out to WatchTopItems streams. One
// computation runs per (namespace, window, limit) on a replica, shared by
// every stream watching it; it recomputes when the store announces a
// change of the namespace (Redis pub/sub, see Listen), at least every poll
// interval (windows slide, and pub/sub may lose a message across a
// reconnection), and never more often than the coalescing interval. A new
// ranking is offered to each subscriber without blocking: a subscriber
// whose buffer is full is dropped (ErrSlowSubscriber), so a slow reader
// never delays the computation or the other subscribers.
package watch

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	analyticsv1 "github.com/highgopress/highgopress/gen/highgopress/analytics/v1"
	platformmetrics "github.com/highgopress/highgopress/platform/metrics"
	"github.com/highgopress/highgopress/services/analytics/domain"
)

// Key is what a computation ranks.
type Key struct {
	Namespace string
	Window    analyticsv1.Window
	Limit     int
}

// Ranking is one computed ranking.
type Ranking struct {
	Items []domain.RankedItem
	AsOf  time.Time
}

// Source computes a ranking.
type Source func(ctx context.Context, k Key) (Ranking, error)

// Hub owns the computations and the subscriptions of one replica.
type Hub struct {
	logger *slog.Logger
	src    Source
	o      options
	m      *metrics

	mu      sync.Mutex
	groups  map[Key]*group
	clients map[string]int
	total   int
	closed  bool
	wg      sync.WaitGroup
}

type group struct {
	key    Key
	ctx    context.Context
	cancel context.CancelFunc
	dirty  chan struct{}
	subs   map[*Sub]struct{}
	last   *Ranking
}

// Sub is one subscription. Receive rankings from C until Done is closed
// (then Err says why); Close it when the stream ends.
type Sub struct {
	C      <-chan Ranking
	c      chan Ranking
	done   chan struct{}
	err    error
	hub    *Hub
	g      *group
	client string
	once   sync.Once
}

// Done is closed when the subscription was dropped or the hub closed.
func (s *Sub) Done() <-chan struct{} { return s.done }

// Err is why Done was closed (after it was).
func (s *Sub) Err() error {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.err
}

// Close ends the subscription and releases what it held.
func (s *Sub) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.hub.release(s, nil)
}

// New returns a Hub computing rankings with src.
func New(logger *slog.Logger, src Source, opts ...Option) *Hub {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	return &Hub{logger: logger, src: src, o: o, m: newMetrics(o.registerer), groups: map[Key]*group{}, clients: map[string]int{}}
}

// Subscribe starts watching k for client (the caller's address). It fails
// with ErrTooManySubscriptions when the client or the replica holds the
// most subscriptions allowed. The current ranking comes first: at once
// when the computation already has one.
func (h *Hub) Subscribe(client string, k Key) (*Sub, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.total >= h.o.maxTotal || h.clients[client] >= h.o.maxPerClient {
		h.m.refused.Inc()
		return nil, domain.ErrTooManySubscriptions
	}
	g := h.groups[k]
	if g == nil {
		ctx, cancel := context.WithCancel(context.Background())
		g = &group{key: k, ctx: ctx, cancel: cancel, dirty: make(chan struct{}, 1), subs: map[*Sub]struct{}{}}
		h.groups[k] = g
		h.wg.Add(1)
		go h.run(g)
	}
	c := make(chan Ranking, h.o.buffer)
	s := &Sub{C: c, c: c, done: make(chan struct{}), hub: h, g: g, client: client}
	g.subs[s] = struct{}{}
	h.clients[client]++
	h.total++
	h.m.subs.Set(float64(h.total))
	if g.last != nil {
		c <- *g.last
	}
	return s, nil
}

// release removes s (h.mu held); err, when not nil, is why it was dropped.
func (h *Hub) release(s *Sub, err error) {
	s.once.Do(func() {
		s.err = err
		close(s.done)
		delete(s.g.subs, s)
		if h.clients[s.client]--; h.clients[s.client] <= 0 {
			delete(h.clients, s.client)
		}
		h.total--
		h.m.subs.Set(float64(h.total))
		if len(s.g.subs) == 0 {
			s.g.cancel()
			if h.groups[s.g.key] == s.g {
				delete(h.groups, s.g.key)
			}
		}
	})
}

// Notify says the rankings of namespace ns may have changed.
func (h *Hub) Notify(ns string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, g := range h.groups {
		if k.Namespace == ns {
			select {
			case g.dirty <- struct{}{}:
			default:
			}
		}
	}
}

// Subscriptions returns how many subscriptions are open.
func (h *Hub) Subscriptions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.total
}

// Computations returns how many computations run.
func (h *Hub) Computations() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.groups)
}

// Close drops every subscription (with ErrClosed) and waits for the
// computations to stop.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	for _, g := range h.groups {
		for s := range g.subs {
			h.release(s, ErrClosed)
		}
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// ErrClosed ends the subscriptions of a hub that is shutting down.
var ErrClosed = errClosed{}

type errClosed struct{}

func (errClosed) Error() string { return "the service is shutting down" }

// run is one computation: compute, offer, wait for a change (or the poll),
// never more often than the interval.
func (h *Hub) run(g *group) {
	defer h.wg.Done()
	poll := time.NewTicker(h.o.poll)
	defer poll.Stop()
	pause := time.NewTimer(0)
	defer pause.Stop()
	<-pause.C
	for {
		h.m.computations.Inc()
		r, err := h.src(g.ctx, g.key)
		if g.ctx.Err() != nil {
			return
		}
		if err != nil {
			h.logger.Warn("ranking computation failed; retrying", "namespace", g.key.Namespace, "window", g.key.Window.String(), "err", err)
		} else {
			h.offer(g, r)
		}
		pause.Reset(h.o.interval)
		select {
		case <-g.ctx.Done():
			return
		case <-pause.C:
		}
		select {
		case <-g.ctx.Done():
			return
		case <-g.dirty:
		case <-poll.C:
		}
	}
}

// offer sends r to every subscriber of g when it differs from the last
// ranking sent, dropping subscribers whose buffer is full.
func (h *Hub) offer(g *group, r Ranking) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if g.last != nil && slices.Equal(g.last.Items, r.Items) {
		return
	}
	g.last = &r
	for s := range g.subs {
		select {
		case s.c <- r:
			h.m.sent.Inc()
		default:
			h.m.dropped.Inc()
			h.release(s, domain.ErrSlowSubscriber)
		}
	}
}

type metrics struct {
	subs         prometheus.Gauge
	refused      prometheus.Counter
	dropped      prometheus.Counter
	sent         prometheus.Counter
	computations prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		subs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hgp_analytics_watch_subscriptions", Help: "Open WatchTopItems subscriptions on this replica.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hgp_analytics_watch_refused_total", Help: "WatchTopItems refused by the per-client or total cap.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hgp_analytics_watch_dropped_total", Help: "WatchTopItems subscribers dropped for reading too slowly.",
		}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hgp_analytics_watch_messages_total", Help: "Rankings handed to WatchTopItems subscribers.",
		}),
		computations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hgp_analytics_watch_computations_total", Help: "Ranking computations run for WatchTopItems.",
		}),
	}
	if reg == nil {
		return m
	}
	m.subs = platformmetrics.Register(reg, m.subs)
	m.refused = platformmetrics.Register(reg, m.refused)
	m.dropped = platformmetrics.Register(reg, m.dropped)
	m.sent = platformmetrics.Register(reg, m.sent)
	m.computations = platformmetrics.Register(reg, m.computations)
	return m
}
