package redisstore_test

import (
	"context"
	"slices"
	"testing"
	"time"

	analyticsv1 "github.com/highgopress/highgopress/gen/highgopress/analytics/v1"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/analytics/internal/antest"
	"github.com/highgopress/highgopress/services/analytics/redisstore"
)

// TestFirstPagesWithinFreshness: with a freshness of 300 ms a reused
// snapshot answers first pages (from memory, one per limit) until the
// freshness has passed, then a change shows; pages continued with a token
// from a remembered first page read the same snapshot.
func TestFirstPagesWithinFreshness(t *testing.T) {
	rdb, prefix := antest.Redis(t)
	s := redisstore.New(logging.Discard(), rdb, redisstore.WithPrefix(prefix), redisstore.WithFreshness(300*time.Millisecond))
	ctx := context.Background()
	if err := s.LoadScripts(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	seq := uint64(0)
	like := func(item, user string) {
		seq++
		apply(t, s, antest.Like(true, ns, item, user, antest.Version(now, seq), now))
	}
	top := func(limit int32) []string {
		p, err := s.Top(ctx, ns, analyticsv1.Window_WINDOW_ALL_TIME, limit, "")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, it := range p.Items {
			out = append(out, it.Item)
		}
		return out
	}
	like("a", "u1")
	like("b", "u1")
	like("b", "u2")
	like("c", "u1")
	cut := time.Now() // the snapshot is cut by the next call, not before
	if got := top(2); !slices.Equal(got, []string{"b", "a"}) {
		t.Fatalf("first page of 2: %v", got)
	}
	if got := top(10); !slices.Equal(got, []string{"b", "a", "c"}) {
		t.Fatalf("first page of 10 (its own page of the same snapshot): %v", got)
	}
	// A change within the freshness is not visible yet: the snapshot and
	// its first pages are reused ...
	like("c", "u2")
	like("c", "u3")
	if got := top(2); time.Since(cut) < 250*time.Millisecond && !slices.Equal(got, []string{"b", "a"}) {
		t.Fatalf("within the freshness the first page changed: %v", got)
	}
	// ... and a token from the remembered first page continues the same
	// snapshot.
	p, err := s.Top(ctx, ns, analyticsv1.Window_WINDOW_ALL_TIME, 2, "")
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(cut) < 250*time.Millisecond {
		next, err := s.Top(ctx, ns, analyticsv1.Window_WINDOW_ALL_TIME, 2, p.Next)
		if err != nil {
			t.Fatal(err)
		}
		if len(next.Items) != 1 || next.Items[0].Item != "c" || next.Items[0].Score != 1 || next.Items[0].Rank != 3 {
			t.Fatalf("second page of the remembered snapshot: %+v", next.Items)
		}
	}
	// Once the freshness has passed, the change shows, in every limit.
	testenv.Eventually(t, 10*time.Second, "the change to show after the freshness", func() bool {
		return slices.Equal(top(2), []string{"c", "b"}) && slices.Equal(top(10), []string{"c", "b", "a"})
	})
	if took := time.Since(cut); took < 300*time.Millisecond {
		t.Fatalf("the change showed %s after the snapshot was cut, within the freshness", took)
	}
}
