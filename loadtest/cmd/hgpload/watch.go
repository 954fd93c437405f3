package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	analyticsv1 "github.com/highgopress/highgopress/gen/highgopress/analytics/v1"
	"github.com/highgopress/highgopress/gen/highgopress/analytics/v1/analyticsv1connect"
	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
)

// The analytics scenarios:
//
//   - topitems: TopItems (limit 10, hour window) JSON POSTs, closed or open
//     loop like the other request ops;
//   - watchcounts: -watchers WatchCounts streams, each watching 100 items of
//     a fresh namespace; likes at -rate on those items; the latency is from
//     a like's scheduled start to the first message of the stream watching
//     the item that shows the new count;
//   - watchtop: -watchers WatchTopItems streams (hour window, limit 100) of
//     a fresh namespace of 100 items; the latency is from a like's
//     scheduled start to the first ranking of each stream that shows the
//     item's new score.
//
// In the watch scenarios an item has at most one like in flight: the next
// like of an item waits until every stream watching it saw the previous
// one, so a coalesced message is never attributed to the wrong like.
// Every like is by a user who has not liked the item yet (-users bounds how
// many likes one item can take).
const (
	opTopItems    = "topitems"
	opWatchCounts = "watchcounts"
	opWatchTop    = "watchtop"
)

// isWatch reports whether op is a watch scenario.
func isWatch(op string) bool { return op == opWatchCounts || op == opWatchTop }

// topItemsRequest is the TopItems request of the topitems op.
func topItemsRequest() (string, []byte) {
	return analyticsv1connect.AnalyticsServiceTopItemsProcedure,
		[]byte(`{"namespace":"article","window":"WINDOW_HOUR","limit":10}`)
}

// watchItemsPerStream is how many items one WatchCounts stream watches (the
// counter's maximum).
const watchItemsPerStream = 100

// watchTimeout is how long a like may take to reach its streams before it
// counts as lost.
const watchTimeout = 10 * time.Second

// pendingLike is a like on its way to the streams watching its item.
type pendingLike struct {
	start time.Time
	left  int    // streams that have not seen it yet
	seen  []bool // per stream watching the item
}

// watchState tracks likes in flight and what each stream saw.
type watchState struct {
	mu       sync.Mutex
	watchers map[string][]int // item → streams watching it
	pending  map[string]*pendingLike
	last     []map[string]int64 // per stream: item → last count or score seen
	likes    map[string]int     // item → likes sent (the next user)
	lat      []int64
	statuses map[string]int
}

func (w *watchState) status(s string) {
	w.mu.Lock()
	w.statuses[s]++
	w.mu.Unlock()
}

// claim returns a random item with no like in flight and the user for its
// next like, or false when none is free among a few tries.
func (w *watchState) claim(rng *rand.Rand, items []string, users int, at time.Time) (string, int, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for range 8 {
		it := items[rng.IntN(len(items))]
		if _, busy := w.pending[it]; busy || w.likes[it] >= users {
			continue
		}
		n := len(w.watchers[it])
		w.pending[it] = &pendingLike{start: at, left: n, seen: make([]bool, n)}
		u := w.likes[it]
		w.likes[it]++
		return it, u, true
	}
	return "", 0, false
}

// release forgets a like that failed.
func (w *watchState) release(item string) {
	w.mu.Lock()
	delete(w.pending, item)
	w.likes[item]--
	w.mu.Unlock()
}

// observe records that stream s saw item at value v (a count or score).
func (w *watchState) observe(s int, item string, v int64, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	prev, known := w.last[s][item]
	w.last[s][item] = v
	if !known || v <= prev {
		return // the first sight of the item, or nothing new
	}
	p := w.pending[item]
	if p == nil {
		return
	}
	for i, ws := range w.watchers[item] {
		if ws == s && !p.seen[i] {
			p.seen[i] = true
			p.left--
			w.lat = append(w.lat, at.Sub(p.start).Microseconds())
		}
	}
	if p.left <= 0 {
		delete(w.pending, item)
	}
}

// expire counts likes older than watchTimeout as lost and forgets them.
func (w *watchState) expire(now time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for it, p := range w.pending {
		if now.Sub(p.start) > watchTimeout {
			n += p.left
			w.statuses["timeout"] += p.left
			delete(w.pending, it)
		}
	}
	return n
}

func (w *watchState) inFlight() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending)
}

// runWatch runs a watch scenario: open loop at c.Rate likes per second
// (100 when 0) for c.Duration, then waits for the likes in flight.
func runWatch(ctx context.Context, c Config, base *url.URL, tokens []string, progress io.Writer) (Result, error) {
	rate := c.Rate
	if rate == 0 {
		rate = 100
	}
	if c.Watchers < 1 || c.Watchers > 1000 {
		return Result{}, fmt.Errorf("-watchers %d: want [1, 1000]", c.Watchers)
	}
	ns := c.Namespace
	if ns == "" {
		ns = "hgpload-" + strconv.FormatInt(time.Now().UnixNano()%1e12, 36)
	}
	// Streams last the whole run: no client timeout; each like has its own.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c.Concurrency + c.Watchers}}
	defer client.CloseIdleConnections()
	counters := counterv1connect.NewCounterServiceClient(client, base.String(), connect.WithProtoJSON())
	analytics := analyticsv1connect.NewAnalyticsServiceClient(client, base.String(), connect.WithProtoJSON())

	w := &watchState{watchers: map[string][]int{}, pending: map[string]*pendingLike{}, likes: map[string]int{}, statuses: map[string]int{}}
	var items []string
	switch c.Op {
	case opWatchCounts:
		for s := range c.Watchers {
			for i := range watchItemsPerStream {
				it := "w" + strconv.Itoa(s*watchItemsPerStream+i)
				items = append(items, it)
				w.watchers[it] = []int{s}
			}
		}
	case opWatchTop:
		for i := range watchItemsPerStream {
			it := "w" + strconv.Itoa(i)
			items = append(items, it)
			for s := range c.Watchers {
				w.watchers[it] = append(w.watchers[it], s)
			}
		}
	}
	for range c.Watchers {
		w.last = append(w.last, map[string]int64{})
	}

	sctx, stopStreams := context.WithCancel(ctx)
	defer stopStreams()
	var streams sync.WaitGroup
	ready := make(chan error, c.Watchers)
	streamErrs := make(chan error, c.Watchers)
	for s := range c.Watchers {
		streams.Go(func() {
			err := watchStream(sctx, c.Op, counters, analytics, ns, items, s, w, ready)
			if err != nil && sctx.Err() == nil {
				streamErrs <- fmt.Errorf("stream %d: %w", s, err)
			}
		})
	}
	for range c.Watchers {
		if err := <-ready; err != nil {
			stopStreams()
			streams.Wait()
			return Result{}, err
		}
	}

	lctx, cancel := context.WithTimeout(ctx, c.Duration)
	defer cancel()
	start := time.Now()
	var sent, errs atomic.Int64
	stopProgress := reportProgress(lctx, progress, &sent, &errs)
	slots := make(chan struct{}, c.Concurrency)
	rng := rand.New(rand.NewPCG(3, 4))
	interval := time.Second / time.Duration(rate)
	next := time.Now()
	var likes sync.WaitGroup
loop:
	for i := 0; i < c.MaxRequests; i++ {
		if d := time.Until(next); d > 0 {
			select {
			case <-lctx.Done():
				break loop
			case <-time.After(d):
			}
		}
		scheduled := next
		next = next.Add(interval)
		errs.Add(int64(w.expire(time.Now())))
		select {
		case err := <-streamErrs:
			stopProgress()
			return Result{}, err
		default:
		}
		item, user, ok := w.claim(rng, items, len(tokens), scheduled)
		if !ok {
			w.status("busy") // every item tried has a like in flight
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-lctx.Done():
			w.release(item)
			break loop
		}
		sent.Add(1)
		likes.Go(func() {
			defer func() { <-slots }()
			req := connect.NewRequest(&counterv1.LikeRequest{Item: &counterv1.ItemRef{Namespace: ns, Id: item}})
			req.Header().Set("Authorization", "Bearer "+tokens[user])
			rctx, cancel := context.WithTimeout(ctx, watchTimeout)
			defer cancel()
			resp, err := counters.Like(rctx, req)
			switch {
			case err != nil:
				w.release(item)
				errs.Add(1)
				w.status("like-" + connect.CodeOf(err).String())
			case !resp.Msg.GetChanged():
				w.release(item)
				errs.Add(1)
				w.status("like-unchanged")
			default:
				w.status("like-ok")
			}
		})
	}
	likes.Wait()
	// The likes in flight reach their streams or time out.
	deadline := time.Now().Add(watchTimeout + time.Second)
	for w.inFlight() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond) // polling the tracker at the end of a load run
	}
	errs.Add(int64(w.expire(time.Now().Add(watchTimeout + time.Second))))
	stopProgress()
	elapsed := time.Since(start).Seconds()
	stopStreams()
	streams.Wait()

	w.mu.Lock()
	defer w.mu.Unlock()
	lat := slices.Clone(w.lat)
	slices.Sort(lat)
	res := summarize(c, "open-loop", lat, errs.Load(), w.statuses, elapsed)
	res.Rate = rate
	return res, nil
}

// watchStream opens stream s and feeds what it shows into w; the first
// message (the current state) is reported on ready.
func watchStream(ctx context.Context, op string, counters counterv1connect.CounterServiceClient,
	analytics analyticsv1connect.AnalyticsServiceClient, ns string, items []string, s int, w *watchState, ready chan<- error) error {
	first := true
	signal := func(err error) {
		if first {
			first = false
			ready <- err
		}
	}
	switch op {
	case opWatchCounts:
		req := &counterv1.WatchCountsRequest{}
		for _, it := range items[s*watchItemsPerStream : (s+1)*watchItemsPerStream] {
			req.Items = append(req.Items, &counterv1.ItemRef{Namespace: ns, Id: it})
		}
		st, err := counters.WatchCounts(ctx, connect.NewRequest(req))
		if err != nil {
			signal(err)
			return err
		}
		defer st.Close()
		for st.Receive() {
			now := time.Now()
			for _, ic := range st.Msg().GetCounts() {
				w.observe(s, ic.GetItem().GetId(), ic.GetLikes(), now)
			}
			signal(nil)
		}
		signal(errors.Join(errors.New("WatchCounts ended"), st.Err()))
		return st.Err()
	default:
		st, err := analytics.WatchTopItems(ctx, connect.NewRequest(&analyticsv1.WatchTopItemsRequest{
			Namespace: ns, Window: analyticsv1.Window_WINDOW_HOUR, Limit: watchItemsPerStream}))
		if err != nil {
			signal(err)
			return err
		}
		defer st.Close()
		for st.Receive() {
			now := time.Now()
			ranked := map[string]int64{}
			for _, it := range st.Msg().GetItems() {
				ranked[it.GetItemId()] = it.GetScore()
			}
			for _, it := range items { // an item not ranked has score 0
				w.observe(s, it, ranked[it], now)
			}
			signal(nil)
		}
		signal(errors.Join(errors.New("WatchTopItems ended"), st.Err()))
		return st.Err()
	}
}
