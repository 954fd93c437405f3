// Package watch fans item changes out to the counter's WatchCounts streams,
// across every counter replica.
//
// Every write script publishes on the changed item's channel
// (redisstore.WatchChannel) in the same atomic step as the write. Each
// replica has one Hub: one Redis pub/sub connection subscribed to the
// channels of the items its streams watch (subscribed when the first
// stream watches an item, unsubscribed when the last one leaves). A
// message only marks its item dirty; rounds, at most one per coalescing
// interval, read the dirty items' counts once (whatever the number of
// watchers) and hand them to each watcher, which keeps only the latest
// counts per item until its stream takes them. So:
//
//   - writers never wait for watchers (PUBLISH costs them one command inside
//     the script, and Redis never blocks a publisher on a slow subscriber's
//     connection beyond its output buffer limits);
//   - a watcher's backlog is at most one entry per watched item;
//   - every change is followed by a read that includes it, so a watcher
//     converges to the final counts even when messages were coalesced or
//     lost: a subscription confirmation (first subscription, and every
//     resubscription after go-redis reconnected) marks the item dirty too,
//     so what changed while the connection was down is read again.
package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/highgopress/highgopress/services/counter/domain"
	"github.com/highgopress/highgopress/services/counter/redisstore"
)

// MaxItems is the most items one stream may watch.
const MaxItems = 100

// Reader reads items' current counts from the store (not from a cache).
type Reader interface {
	ReadCounts(ctx context.Context, items []domain.ItemRef) ([]domain.ItemCounts, error)
}

// Subscriber opens the pub/sub connection (*redis.Client and
// *redis.ClusterClient qualify).
type Subscriber interface {
	Subscribe(ctx context.Context, channels ...string) *redis.PubSub
}

var (
	// ErrTooManyStreams reports a stream refused by a cap: the replica's or
	// the client's (WithMaxStreams, WithMaxPerClient).
	ErrTooManyStreams = errors.New("too many watch streams")
	// ErrClosed reports a hub that is shutting down.
	ErrClosed = errors.New("watching is shutting down")
)

// Stats are a hub's counters.
type Stats struct {
	// Streams are the open watchers; Items the subscribed channels.
	Streams, Items int
	// Messages received, Rounds of reads, Reads items read, ReadErrors
	// failed rounds, Subscribes confirmations received (each is a re-read).
	Messages, Rounds, Reads, ReadErrors, Subscribes int64
}

// Hub is one replica's fan-out. Create it with New; it starts its
// goroutines with the first Watch.
type Hub struct {
	logger *slog.Logger
	subs   Subscriber
	read   Reader
	opts   options

	startOnce sync.Once
	ctx       context.Context
	cancel    context.CancelFunc
	ps        *redis.PubSub
	wg        sync.WaitGroup
	kick      chan struct{}

	// subMu orders map changes with the (UN)SUBSCRIBE commands they need,
	// so an item dropped by one stream and added by another in between
	// ends subscribed. Taken before mu.
	subMu sync.Mutex
	// readMu serializes rounds and snapshots, so what a watcher receives
	// never goes back to older counts.
	readMu sync.Mutex

	mu      sync.Mutex
	closed  bool
	items   map[domain.ItemRef]map[*Watcher]int
	dirty   map[domain.ItemRef]struct{}
	clients map[string]int
	streams int

	messages, rounds, reads, readErrors, subscribes atomic.Int64
}

// New returns a Hub subscribing through subs and reading through read.
func New(logger *slog.Logger, subs Subscriber, read Reader, opts ...Option) *Hub {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Hub{
		logger: logger, subs: subs, read: read, opts: o,
		ctx: ctx, cancel: cancel,
		kick:    make(chan struct{}, 1),
		items:   map[domain.ItemRef]map[*Watcher]int{},
		dirty:   map[domain.ItemRef]struct{}{},
		clients: map[string]int{},
	}
}

// start opens the pub/sub connection and starts the receiver and the
// rounds.
func (h *Hub) start() {
	h.startOnce.Do(func() {
		if h.ctx.Err() != nil {
			return // closed before the first stream
		}
		h.ps = h.subs.Subscribe(h.ctx)
		ch := h.ps.ChannelWithSubscriptions(redis.WithChannelSize(1024))
		h.wg.Add(2)
		go func() { defer h.wg.Done(); h.receive(ch) }()
		go func() { defer h.wg.Done(); h.loop() }()
	})
}

// Run ends every stream and releases the subscription when ctx is done:
// the counter runs it as a worker, so streams end as soon as shutdown
// begins instead of holding the server's drain.
func (h *Hub) Run(ctx context.Context) error {
	<-ctx.Done()
	return h.Close()
}

// Close ends every stream (their Done channels close) and closes the
// pub/sub connection. Calling it again does nothing.
func (h *Hub) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	var ws []*Watcher
	for _, set := range h.items {
		for w := range set {
			ws = append(ws, w)
		}
	}
	h.mu.Unlock()
	for _, w := range ws {
		w.end(ErrClosed)
	}
	h.cancel()
	var err error
	if h.ps != nil {
		err = h.ps.Close()
	}
	h.wg.Wait()
	if err != nil {
		return fmt.Errorf("watch: closing the subscription: %w", err)
	}
	return nil
}

// Stats returns the hub's counters.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	st := Stats{Streams: h.streams, Items: len(h.items)}
	h.mu.Unlock()
	st.Messages, st.Rounds, st.Reads = h.messages.Load(), h.rounds.Load(), h.reads.Load()
	st.ReadErrors, st.Subscribes = h.readErrors.Load(), h.subscribes.Load()
	return st
}

// Watch opens a stream on items (validated by the caller: 1 to MaxItems
// distinct items) for client (the caps count streams per client) and
// returns it with the items' current counts, in order. The caller must
// Close it.
func (h *Hub) Watch(ctx context.Context, client string, items []domain.ItemRef) (*Watcher, []domain.ItemCounts, error) {
	h.start()
	w := &Watcher{
		hub: h, client: client, items: slices.Clone(items),
		pending: map[int]domain.ItemCounts{},
		ready:   make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	if err := h.register(ctx, w); err != nil {
		return nil, nil, err
	}
	// The snapshot is read after the subscription was asked for: a change
	// it misses is either published after SUBSCRIBE took effect or read
	// again when the confirmation arrives. Under readMu no round runs, so
	// whatever is pending is older than the snapshot.
	h.readMu.Lock()
	counts, err := h.readAll(ctx, items)
	if err == nil {
		w.mu.Lock()
		w.last = slices.Clone(counts)
		clear(w.pending)
		w.mu.Unlock()
	}
	h.readMu.Unlock()
	if err != nil {
		w.Close()
		return nil, nil, err
	}
	return w, counts, nil
}

func (h *Hub) register(ctx context.Context, w *Watcher) error {
	h.subMu.Lock()
	defer h.subMu.Unlock()
	h.mu.Lock()
	switch {
	case h.closed:
		h.mu.Unlock()
		return ErrClosed
	case h.streams >= h.opts.maxStreams:
		h.mu.Unlock()
		refused.Inc()
		return fmt.Errorf("%w: this replica serves %d streams, the most it allows", ErrTooManyStreams, h.opts.maxStreams)
	case h.clients[w.client] >= h.opts.maxPerClient:
		h.mu.Unlock()
		refused.Inc()
		return fmt.Errorf("%w: this client has %d streams open, the most allowed", ErrTooManyStreams, h.opts.maxPerClient)
	}
	h.streams++
	h.clients[w.client]++
	var fresh []string
	for i, it := range w.items {
		set, ok := h.items[it]
		if !ok {
			set = map[*Watcher]int{}
			h.items[it] = set
			fresh = append(fresh, redisstore.WatchChannel(it))
		}
		set[w] = i
	}
	w.registered = true
	subscriptions.Inc()
	watchedItems.Add(float64(len(fresh)))
	h.mu.Unlock()
	if len(fresh) == 0 {
		return nil
	}
	if err := h.ps.Subscribe(ctx, fresh...); err != nil {
		h.unregisterLocked(ctx, w)
		return fmt.Errorf("%w: subscribing to changes: %w", domain.ErrUnavailable, err)
	}
	return nil
}

// unregister removes w, unsubscribing the items nobody watches any more.
func (h *Hub) unregister(w *Watcher) {
	h.subMu.Lock()
	defer h.subMu.Unlock()
	h.unregisterLocked(context.Background(), w)
}

func (h *Hub) unregisterLocked(ctx context.Context, w *Watcher) {
	h.mu.Lock()
	if !w.registered {
		h.mu.Unlock()
		return
	}
	w.registered = false
	h.streams--
	if h.clients[w.client]--; h.clients[w.client] <= 0 {
		delete(h.clients, w.client)
	}
	var gone []string
	for _, it := range w.items {
		set := h.items[it]
		delete(set, w)
		if len(set) == 0 {
			delete(h.items, it)
			delete(h.dirty, it)
			gone = append(gone, redisstore.WatchChannel(it))
		}
	}
	closed := h.closed
	subscriptions.Dec()
	watchedItems.Sub(float64(len(gone)))
	h.mu.Unlock()
	if len(gone) > 0 && !closed {
		// Bounded: a lost UNSUBSCRIBE only leaves messages that are
		// ignored (no entry), and the next reconnect drops the channel.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := h.ps.Unsubscribe(uctx, gone...); err != nil {
			h.logger.Warn("watch: unsubscribing", "channels", len(gone), "err", err)
		}
	}
}

// receive marks the items of messages and subscription confirmations
// dirty until the pub/sub connection is closed.
func (h *Hub) receive(ch <-chan any) {
	for msg := range ch {
		var channel string
		switch m := msg.(type) {
		case *redis.Message:
			h.messages.Add(1)
			channel = m.Channel
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			h.subscribes.Add(1)
			channel = m.Channel
		default:
			continue
		}
		it, ok := redisstore.ParseWatchChannel(channel)
		if !ok {
			continue
		}
		h.mu.Lock()
		_, watched := h.items[it]
		if watched {
			h.dirty[it] = struct{}{}
		}
		h.mu.Unlock()
		if watched {
			h.poke()
		}
	}
}

func (h *Hub) poke() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// loop runs a round when items are dirty, at most once per interval.
func (h *Hub) loop() {
	var last time.Time
	timer := time.NewTimer(0)
	<-timer.C
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-h.kick:
		}
		if wait := h.opts.interval - time.Since(last); wait > 0 {
			timer.Reset(wait)
			select {
			case <-h.ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
		}
		last = time.Now()
		if !h.round() {
			// Read again after a pause (the items stayed dirty).
			timer.Reset(h.opts.retry)
			select {
			case <-h.ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
			h.poke()
		}
	}
}

// round reads the dirty items and hands their counts to their watchers.
// It reports false when the read failed (the items stay dirty).
func (h *Hub) round() bool {
	h.readMu.Lock()
	defer h.readMu.Unlock()
	h.mu.Lock()
	if len(h.dirty) == 0 {
		h.mu.Unlock()
		return true
	}
	items := make([]domain.ItemRef, 0, len(h.dirty))
	for it := range h.dirty {
		items = append(items, it)
	}
	clear(h.dirty)
	h.mu.Unlock()
	h.rounds.Add(1)

	counts, err := h.readAll(h.ctx, items)
	if err != nil {
		h.readErrors.Add(1)
		h.mu.Lock()
		for _, it := range items {
			if _, ok := h.items[it]; ok {
				h.dirty[it] = struct{}{}
			}
		}
		h.mu.Unlock()
		if h.ctx.Err() == nil {
			h.logger.Warn("watch: reading changed items", "items", len(items), "err", err)
		}
		return false
	}
	h.reads.Add(int64(len(items)))
	h.mu.Lock()
	for i, it := range items {
		for w, idx := range h.items[it] {
			w.offer(idx, counts[i])
		}
	}
	h.mu.Unlock()
	return true
}

// readAll reads items in chunks of at most domain.MaxBatchItems.
func (h *Hub) readAll(ctx context.Context, items []domain.ItemRef) ([]domain.ItemCounts, error) {
	out := make([]domain.ItemCounts, 0, len(items))
	for start := 0; start < len(items); start += domain.MaxBatchItems {
		c, err := h.read.ReadCounts(ctx, items[start:min(start+domain.MaxBatchItems, len(items))])
		if err != nil {
			return nil, err
		}
		out = append(out, c...)
	}
	return out, nil
}

// Watcher is one stream's view of the hub.
type Watcher struct {
	hub    *Hub
	client string
	items  []domain.ItemRef
	// registered is guarded by hub.mu.
	registered bool

	mu      sync.Mutex
	pending map[int]domain.ItemCounts
	last    []domain.ItemCounts
	err     error
	ready   chan struct{}
	done    chan struct{}
	once    sync.Once
}

// Change is the new counts of the watched item at Index.
type Change struct {
	Index  int
	Counts domain.ItemCounts
}

// Ready is signalled when changes may be waiting (Take).
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

// Done is closed when the hub ends the stream; Err then says why.
func (w *Watcher) Done() <-chan struct{} { return w.done }

// Err is why the hub ended the stream (nil while it runs).
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Take returns the items whose counts differ from what was taken (or
// snapshotted) before, in watch order, and forgets them.
func (w *Watcher) Take() []Change {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.pending) == 0 {
		return nil
	}
	out := make([]Change, 0, len(w.pending))
	for idx, c := range w.pending {
		if !sameCounts(c, w.last[idx]) {
			w.last[idx] = c
			out = append(out, Change{Index: idx, Counts: c})
		}
	}
	clear(w.pending)
	slices.SortFunc(out, func(a, b Change) int { return a.Index - b.Index })
	return out
}

// Close releases the stream: its items are unsubscribed when nobody else
// watches them. Calling it again does nothing.
func (w *Watcher) Close() {
	w.hub.unregister(w)
	w.end(nil)
}

func (w *Watcher) offer(idx int, c domain.ItemCounts) {
	w.mu.Lock()
	w.pending[idx] = c
	w.mu.Unlock()
	select {
	case w.ready <- struct{}{}:
	default:
	}
}

func (w *Watcher) end(err error) {
	w.once.Do(func() {
		w.mu.Lock()
		w.err = err
		w.mu.Unlock()
		close(w.done)
	})
}

func sameCounts(a, b domain.ItemCounts) bool {
	if a.Likes != b.Likes || len(a.Metrics) != len(b.Metrics) {
		return false
	}
	for k, v := range a.Metrics {
		if bv, ok := b.Metrics[k]; !ok || bv != v {
			return false
		}
	}
	return true
}
