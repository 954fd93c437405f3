package watch_test

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	analyticsv1 "github.com/highgopress/highgopress/gen/highgopress/analytics/v1"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/analytics/domain"
	"github.com/highgopress/highgopress/services/analytics/watch"
)

// source returns a ranking whose only item's score is the current value.
func source(v *atomic.Int64, calls *atomic.Int64) watch.Source {
	return func(context.Context, watch.Key) (watch.Ranking, error) {
		calls.Add(1)
		return watch.Ranking{Items: []domain.RankedItem{{Item: "a", Score: v.Load(), Rank: 1}}}, nil
	}
}

var key = watch.Key{Namespace: "article", Window: analyticsv1.Window_WINDOW_HOUR, Limit: 10}

// TestSlowSubscriberDroppedOthersServed: a subscriber that never reads is
// dropped with ErrSlowSubscriber once its buffer is full, while a reading
// subscriber of the same computation sees every change up to the last.
func TestSlowSubscriberDroppedOthersServed(t *testing.T) {
	var v, calls atomic.Int64
	h := watch.New(logging.Discard(), source(&v, &calls), watch.WithBuffer(2), watch.WithInterval(10*time.Millisecond), watch.WithRegisterer(nil))
	defer h.Close()
	slow, err := h.Subscribe("1.2.3.4", key)
	if err != nil {
		t.Fatal(err)
	}
	fast, err := h.Subscribe("5.6.7.8", key)
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	var last int64 = -1
	for i := int64(1); i <= 20; i++ {
		v.Store(i)
		h.Notify("article")
		deadline := time.After(10 * time.Second)
		for last != i {
			select {
			case r := <-fast.C:
				last = r.Items[0].Score
			case <-deadline:
				t.Fatalf("the reading subscriber did not see %d (last %d)", i, last)
			}
		}
	}
	select {
	case <-slow.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the slow subscriber was not dropped")
	}
	if !errors.Is(slow.Err(), domain.ErrSlowSubscriber) {
		t.Fatalf("slow subscriber ended with %v", slow.Err())
	}
	slow.Close() // a second release is harmless
	if n := h.Subscriptions(); n != 1 {
		t.Fatalf("%d subscriptions, want 1", n)
	}
	if h.Computations() != 1 {
		t.Fatalf("%d computations for one key, want 1 shared", h.Computations())
	}
}

// TestCapsAndRelease: the per-client and total caps refuse with
// ErrTooManySubscriptions; closing every subscription stops the
// computations and returns the goroutines.
func TestCapsAndRelease(t *testing.T) {
	base := runtime.NumGoroutine()
	var v, calls atomic.Int64
	h := watch.New(logging.Discard(), source(&v, &calls), watch.WithLimits(2, 3), watch.WithRegisterer(nil))
	var subs []*watch.Sub
	for i := range 2 {
		s, err := h.Subscribe("a", watch.Key{Namespace: "n" + strconv.Itoa(i), Window: analyticsv1.Window_WINDOW_DAY, Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	if _, err := h.Subscribe("a", key); !errors.Is(err, domain.ErrTooManySubscriptions) {
		t.Fatalf("third of one client: %v", err)
	}
	s, err := h.Subscribe("b", key)
	if err != nil {
		t.Fatal(err)
	}
	subs = append(subs, s)
	if _, err := h.Subscribe("c", key); !errors.Is(err, domain.ErrTooManySubscriptions) {
		t.Fatalf("fourth in total: %v", err)
	}
	for _, s := range subs {
		select {
		case <-s.C:
		case <-time.After(10 * time.Second):
			t.Fatal("no first ranking")
		}
		s.Close()
	}
	if h.Subscriptions() != 0 || h.Computations() != 0 {
		t.Fatalf("after closing: %d subscriptions, %d computations", h.Subscriptions(), h.Computations())
	}
	testenv.Eventually(t, 10*time.Second, "goroutines back to baseline", func() bool { return runtime.NumGoroutine() <= base })
	h.Close()
}
