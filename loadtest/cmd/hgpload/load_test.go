package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
)

func TestRunClosedLoopCountsEveryRequest(t *testing.T) {
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		if r.Header.Get("Content-Type") != "application/json" || !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		_, _ = w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	res, err := Run(context.Background(), Config{
		URL: srv.URL, Op: "like", Concurrency: 4, Duration: 5 * time.Second, MaxRequests: 200,
		Users: 3, Items: 10, Secret: strings.Repeat("s", 32),
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 200 || got.Load() != 200 || res.Errors != 0 || res.Statuses["200"] != 200 {
		t.Fatalf("result %+v, server saw %d", res, got.Load())
	}
	if res.P50us <= 0 || res.P99us < res.P50us || res.MaxUs < res.P99us {
		t.Fatalf("percentiles out of order: %+v", res)
	}
}

func TestRunOpenLoopIsBounded(t *testing.T) {
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	res, err := Run(context.Background(), Config{
		URL: srv.URL, Op: "getcounts", Rate: 1000, Concurrency: 8, Duration: 5 * time.Second, MaxRequests: 50,
		Users: 1, Items: 1,
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 50 || res.Errors != 50 || res.Statuses["429"] != 50 || res.Mode != "open-loop" {
		t.Fatalf("result %+v", res)
	}
}

func TestRunRefusesNonLoopbackAndBadFlags(t *testing.T) {
	for name, c := range map[string]Config{
		"public host":  {URL: "http://192.0.2.1:8080", Op: "getcounts", Concurrency: 1, Duration: time.Second, MaxRequests: 1, Users: 1, Items: 1},
		"unknown op":   {URL: "http://127.0.0.1:1", Op: "delete", Concurrency: 1, Duration: time.Second, MaxRequests: 1, Users: 1, Items: 1},
		"unbounded":    {URL: "http://127.0.0.1:1", Op: "getcounts", Concurrency: 1, Duration: time.Hour, MaxRequests: 1, Users: 1, Items: 1},
		"write no key": {URL: "http://127.0.0.1:1", Op: "like", Concurrency: 1, Duration: time.Second, MaxRequests: 1, Users: 1, Items: 1},
	} {
		if _, err := Run(context.Background(), c, io.Discard); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}

func TestRunGetCountsBatchPrefixAndZipf(t *testing.T) {
	var bad atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Items []struct{ Namespace, ID string }
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Items) != 50 {
			bad.Add(1)
		}
		for _, it := range req.Items {
			n, err := strconv.Atoi(strings.TrimPrefix(it.ID, "fresh-7-"))
			if !strings.HasPrefix(it.ID, "fresh-7-") || err != nil || n < 0 || n >= 100 {
				bad.Add(1)
			}
		}
		_, _ = w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	res, err := Run(context.Background(), Config{
		URL: srv.URL, Op: "getcounts", Concurrency: 2, Duration: 5 * time.Second, MaxRequests: 40,
		Users: 1, Items: 100, Batch: 50, Prefix: "fresh-7-", Zipf: 1.1,
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 40 || res.Errors != 0 || bad.Load() != 0 {
		t.Fatalf("result %+v, %d malformed requests or items", res, bad.Load())
	}
}

// fakeCounter is a CounterService with Like and WatchCounts: every like
// raises its item's count and is pushed to the streams watching the item.
type fakeCounter struct {
	counterv1connect.UnimplementedCounterServiceHandler
	mu     sync.Mutex
	counts map[string]int64
	subs   map[chan *counterv1.ItemCount]map[string]bool
}

func (f *fakeCounter) Like(_ context.Context, req *connect.Request[counterv1.LikeRequest]) (*connect.Response[counterv1.LikeResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := req.Msg.GetItem().GetId()
	f.counts[id]++
	for ch, items := range f.subs {
		if items[id] {
			ch <- &counterv1.ItemCount{Item: req.Msg.GetItem(), Likes: f.counts[id]}
		}
	}
	return connect.NewResponse(&counterv1.LikeResponse{Changed: true, Count: f.counts[id]}), nil
}

func (f *fakeCounter) WatchCounts(ctx context.Context, req *connect.Request[counterv1.WatchCountsRequest], st *connect.ServerStream[counterv1.WatchCountsResponse]) error {
	ch := make(chan *counterv1.ItemCount, 1024)
	f.mu.Lock()
	items := map[string]bool{}
	first := &counterv1.WatchCountsResponse{}
	for _, it := range req.Msg.GetItems() {
		items[it.GetId()] = true
		first.Counts = append(first.Counts, &counterv1.ItemCount{Item: it, Likes: f.counts[it.GetId()]})
	}
	f.subs[ch] = items
	f.mu.Unlock()
	defer func() { f.mu.Lock(); delete(f.subs, ch); f.mu.Unlock() }()
	if err := st.Send(first); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case c := <-ch:
			if err := st.Send(&counterv1.WatchCountsResponse{Counts: []*counterv1.ItemCount{c}}); err != nil {
				return err
			}
		}
	}
}

func TestRunWatchCountsMeasuresEveryLike(t *testing.T) {
	f := &fakeCounter{counts: map[string]int64{}, subs: map[chan *counterv1.ItemCount]map[string]bool{}}
	mux := http.NewServeMux()
	mux.Handle(counterv1connect.NewCounterServiceHandler(f))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	res, err := Run(context.Background(), Config{
		URL: srv.URL, Op: "watchcounts", Rate: 200, Concurrency: 8, Duration: 2 * time.Second, MaxRequests: 300,
		Users: 50, Items: 1, Secret: strings.Repeat("s", 32), Watchers: 2,
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.Errors != 0 || int64(res.Statuses["like-ok"]) != res.Requests {
		t.Fatalf("result %+v: every acknowledged like must be seen by its stream exactly once", res)
	}
	if res.P50us <= 0 || res.P99us < res.P50us || res.MaxUs < res.P99us {
		t.Fatalf("percentiles out of order: %+v", res)
	}
}
