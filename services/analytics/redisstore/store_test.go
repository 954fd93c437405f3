package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	analyticsv1 "github.com/highgopress/highgopress/gen/highgopress/analytics/v1"
	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/services/analytics/domain"
	"github.com/highgopress/highgopress/services/analytics/internal/antest"
	"github.com/highgopress/highgopress/services/analytics/redisstore"
	"github.com/highgopress/highgopress/services/analytics/window"
)

const ns = "article"

func newStore(t *testing.T, clock window.Clock) (*redisstore.Store, func() int64) {
	t.Helper()
	rdb, prefix := antest.Redis(t)
	s := redisstore.New(logging.Discard(), rdb, redisstore.WithPrefix(prefix), redisstore.WithClock(clock), redisstore.WithFreshness(0))
	if err := s.LoadScripts(context.Background()); err != nil {
		t.Fatal(err)
	}
	keys := func() int64 {
		n, err := rdb.Eval(context.Background(), `return #redis.call('KEYS', ARGV[1])`, nil, prefix+"*").Int64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	return s, keys
}

func apply(t *testing.T, s *redisstore.Store, evs ...*eventsv1.Event) redisstore.Result {
	t.Helper()
	res, err := s.Apply(context.Background(), evs)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// ranking returns "item=score" of the whole ranking, paging by 3.
func ranking(t *testing.T, s *redisstore.Store, w analyticsv1.Window) []string {
	t.Helper()
	var out []string
	token := ""
	for {
		p, err := s.Top(context.Background(), ns, w, 3, token)
		if err != nil {
			t.Fatalf("Top %s: %v", w, err)
		}
		for i, it := range p.Items {
			if it.Rank != int64(len(out)+1) {
				t.Fatalf("%s: item %d of the page has rank %d, want %d", w, i, it.Rank, len(out)+1)
			}
			out = append(out, fmt.Sprintf("%s=%d", it.Item, it.Score))
		}
		if p.Next == "" {
			return out
		}
		token = p.Next
	}
}

// TestWindowsAcrossBoundaries places likes on both sides of each window's
// edge with a controlled clock and checks which windows count them, then
// moves the clock so they slide out, and checks the buckets' TTLs.
func TestWindowsAcrossBoundaries(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 30, 30, 0, time.UTC)
	clock := antest.NewClock(now)
	s, _ := newStore(t, clock)
	at := map[string]time.Time{
		"now":        now,
		"hour-in":    now.Add(-59 * time.Minute), // minute bucket 12:31-59 = 11:31, the oldest of the hour window
		"hour-out":   now.Add(-61 * time.Minute), // 11:29: out of the hour, in the day
		"day-in":     now.Add(-23 * time.Hour),   // hour bucket 13:00 the day before: oldest of the day
		"day-out":    now.Add(-25 * time.Hour),   // out of the day, in the week
		"week-in":    now.Add(-167 * time.Hour),
		"week-out":   now.Add(-169 * time.Hour), // all-time only
		"future-out": now.Add(2 * time.Minute),  // 12:32:30: in its hour bucket (day, week), in the hour window from 12:32
	}
	var evs []*eventsv1.Event
	for item, ts := range at {
		evs = append(evs, antest.Like(true, ns, item, "u1", antest.Version(ts, 0), ts))
	}
	if res := apply(t, s, evs...); res.Transitions != len(at) {
		t.Fatalf("transitions %d, want %d", res.Transitions, len(at))
	}
	want := map[analyticsv1.Window][]string{
		analyticsv1.Window_WINDOW_HOUR:     {"hour-in=1", "now=1"},
		analyticsv1.Window_WINDOW_DAY:      {"day-in=1", "future-out=1", "hour-in=1", "hour-out=1", "now=1"},
		analyticsv1.Window_WINDOW_WEEK:     {"day-in=1", "day-out=1", "future-out=1", "hour-in=1", "hour-out=1", "now=1", "week-in=1"},
		analyticsv1.Window_WINDOW_ALL_TIME: {"day-in=1", "day-out=1", "future-out=1", "hour-in=1", "hour-out=1", "now=1", "week-in=1", "week-out=1"},
	}
	for w, items := range want {
		if got := ranking(t, s, w); !slices.Equal(got, items) {
			t.Errorf("%s: %v, want %v", w, got, items)
		}
	}
	// An unlike now of a like made 61 minutes ago: -1 in the hour (not
	// shown: only positive scores rank), the like and unlike cancel in the
	// day, the item leaves all-time.
	apply(t, s, antest.Like(false, ns, "hour-out", "u1", antest.Version(now, 1), now))
	if got := ranking(t, s, analyticsv1.Window_WINDOW_DAY); slices.Contains(got, "hour-out=1") {
		t.Errorf("day after the unlike: %v still has hour-out", got)
	}
	if got := ranking(t, s, analyticsv1.Window_WINDOW_ALL_TIME); slices.Contains(got, "hour-out=1") {
		t.Errorf("all-time after the unlike: %v still has hour-out", got)
	}

	// 30 seconds later the oldest minute of the hour (11:31) is still in;
	// one minute later it is out.
	clock.Set(now.Add(29 * time.Second))
	if got := ranking(t, s, analyticsv1.Window_WINDOW_HOUR); !slices.Equal(got, []string{"hour-in=1", "now=1"}) {
		t.Errorf("hour at 12:30:59: %v", got)
	}
	clock.Set(now.Add(60 * time.Second))
	if got := ranking(t, s, analyticsv1.Window_WINDOW_HOUR); !slices.Equal(got, []string{"now=1"}) {
		t.Errorf("hour at 12:31:30: %v, want only now", got)
	}
	clock.Set(now.Add(3 * time.Minute))
	if got := ranking(t, s, analyticsv1.Window_WINDOW_HOUR); !slices.Equal(got, []string{"future-out=1", "now=1"}) {
		t.Errorf("hour at 12:33:30: %v, want future-out and now", got)
	}
	clock.Set(now.Add(2 * time.Hour))
	if got := ranking(t, s, analyticsv1.Window_WINDOW_HOUR); len(got) != 0 {
		t.Errorf("hour two hours later: %v, want empty", got)
	}
	clock.Set(now.Add(8 * 24 * time.Hour))
	if got := ranking(t, s, analyticsv1.Window_WINDOW_WEEK); len(got) != 0 {
		t.Errorf("week eight days later: %v, want empty", got)
	}
	if got := ranking(t, s, analyticsv1.Window_WINDOW_ALL_TIME); len(got) != 7 {
		t.Errorf("all-time eight days later: %v, want 7 items", got)
	}
}

// TestBucketsExpireAfterTheirWindow: a bucket's TTL is its window (plus
// slack) from its start; an event already outside every window writes no
// bucket.
func TestBucketsExpireAfterTheirWindow(t *testing.T) {
	rdb, prefix := antest.Redis(t)
	now := time.Now().Truncate(time.Minute).Add(10 * time.Second)
	clock := antest.NewClock(now)
	s := redisstore.New(logging.Discard(), rdb, redisstore.WithPrefix(prefix), redisstore.WithClock(clock))
	old := now.Add(-8 * 24 * time.Hour)
	apply(t, s, antest.Like(true, ns, "a", "u", antest.Version(now, 0), now),
		antest.Like(true, ns, "b", "u", antest.Version(old, 0), old))
	ctx := context.Background()
	minute := fmt.Sprintf("%sm:%s:%d", prefix, ns, window.Minute.Index(now))
	hour := fmt.Sprintf("%sh:%s:%d", prefix, ns, window.Hour.Index(now))
	check := func(key string, want time.Duration) {
		ttl, err := rdb.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl > want || ttl < want-5*time.Second {
			t.Errorf("%s: TTL %s, want about %s", key, ttl, want)
		}
	}
	check(minute, time.Hour+window.Slack-10*time.Second)
	hourStart := window.Hour.Start(window.Hour.Index(now))
	check(hour, hourStart.Add(168*time.Hour+window.Slack).Sub(now))
	n, err := rdb.Exists(ctx, fmt.Sprintf("%sh:%s:%d", prefix, ns, window.Hour.Index(old))).Result()
	if err != nil || n != 0 {
		t.Errorf("an event older than the week wrote its hour bucket (%d, %v)", n, err)
	}
	if p, err := s.Top(ctx, ns, analyticsv1.Window_WINDOW_ALL_TIME, 10, ""); err != nil || len(p.Items) != 2 {
		t.Errorf("all-time: %v %v, want a and b", p.Items, err)
	}
}

// TestRedeliveryChangesNothing applies the same batch twice, and its events
// one by one again: scores do not move.
func TestRedeliveryChangesNothing(t *testing.T) {
	now := time.Now()
	s, _ := newStore(t, antest.NewClock(now))
	var evs []*eventsv1.Event
	for i := range 20 {
		at := now.Add(-time.Duration(i) * time.Minute)
		evs = append(evs, antest.Like(true, ns, fmt.Sprintf("i%d", i%5), fmt.Sprintf("u%d", i), antest.Version(at, uint64(i)), at))
	}
	first := apply(t, s, evs...)
	if first.Transitions != 20 {
		t.Fatalf("first apply: %+v", first)
	}
	before := map[analyticsv1.Window][]string{}
	for w := analyticsv1.Window_WINDOW_HOUR; w <= analyticsv1.Window_WINDOW_ALL_TIME; w++ {
		before[w] = ranking(t, s, w)
	}
	again := apply(t, s, evs...)
	for _, ev := range evs {
		again.Ignored += apply(t, s, ev).Ignored
	}
	if again.Transitions != 0 || again.Ignored != 40 {
		t.Fatalf("redelivery: %+v, want 40 ignored and no transition", again)
	}
	for w, want := range before {
		if got := ranking(t, s, w); !slices.Equal(got, want) {
			t.Errorf("%s after redelivery: %v, want %v", w, got, want)
		}
	}
}

// TestReorderedVersions: an older like arriving after a newer unlike does
// not resurrect the like; a newer event with the same state only moves the
// version.
func TestReorderedVersions(t *testing.T) {
	now := time.Now()
	s, _ := newStore(t, antest.NewClock(now))
	v1, v2, v3 := antest.Version(now, 1), antest.Version(now, 2), antest.Version(now.Add(time.Millisecond), 0)
	apply(t, s, antest.Like(false, ns, "x", "u", v2, now)) // the unlike first: off, nothing to count
	if res := apply(t, s, antest.Like(true, ns, "x", "u", v1, now)); res.Transitions != 0 {
		t.Fatalf("an older like counted: %+v", res)
	}
	if got := ranking(t, s, analyticsv1.Window_WINDOW_ALL_TIME); len(got) != 0 {
		t.Fatalf("all-time %v, want empty: the like was undone", got)
	}
	if res := apply(t, s, antest.Like(true, ns, "x", "u", v3, now)); res.Transitions != 1 {
		t.Fatalf("a newer like did not count: %+v", res)
	}
	// Versions above 2^53 compare exactly (20-digit strings, not Lua numbers).
	big := uint64(1)<<60 + 1
	apply(t, s, antest.Like(false, ns, "y", "u", big, now))
	if res := apply(t, s, antest.Like(true, ns, "y", "u", big-1, now)); res.Transitions != 0 {
		t.Fatalf("version %d was taken as newer than %d", big-1, big)
	}
	if got := ranking(t, s, analyticsv1.Window_WINDOW_ALL_TIME); !slices.Equal(got, []string{"x=1"}) {
		t.Fatalf("all-time %v, want x=1", got)
	}
}

// TestPagingAndTies: order by score descending then id ascending, ranks
// global, pages of one snapshot unaffected by later events, a first page
// after a change sees it.
func TestPagingAndTies(t *testing.T) {
	now := time.Now()
	s, _ := newStore(t, antest.NewClock(now))
	var evs []*eventsv1.Event
	seq := uint64(0)
	// item "i<n>" gets n%4 likes.
	for n := range 12 {
		for u := range n % 4 {
			seq++
			evs = append(evs, antest.Like(true, ns, fmt.Sprintf("i%02d", n), fmt.Sprintf("u%d", u), antest.Version(now, seq), now))
		}
	}
	apply(t, s, evs...)
	want := []string{"i03=3", "i07=3", "i11=3", "i02=2", "i06=2", "i10=2", "i01=1", "i05=1", "i09=1"}
	ctx := context.Background()
	p1, err := s.Top(ctx, ns, analyticsv1.Window_WINDOW_ALL_TIME, 4, "")
	if err != nil {
		t.Fatal(err)
	}
	// A change between pages does not move the snapshot being paged.
	seq++
	apply(t, s, antest.Like(true, ns, "i00", "late", antest.Version(now, seq), now))
	var got []string
	for _, it := range p1.Items {
		got = append(got, fmt.Sprintf("%s=%d", it.Item, it.Score))
	}
	token := p1.Next
	for token != "" {
		p, err := s.Top(ctx, ns, analyticsv1.Window_WINDOW_ALL_TIME, 4, token)
		if err != nil {
			t.Fatal(err)
		}
		if !p.AsOf.Equal(p1.AsOf) {
			t.Errorf("page as_of %v, first page %v", p.AsOf, p1.AsOf)
		}
		for _, it := range p.Items {
			got = append(got, fmt.Sprintf("%s=%d", it.Item, it.Score))
		}
		token = p.Next
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged ranking %v, want %v", got, want)
	}
	if fresh := ranking(t, s, analyticsv1.Window_WINDOW_ALL_TIME); !slices.Contains(fresh, "i00=1") {
		t.Fatalf("a new first page %v does not see the late like", fresh)
	}
	// The default limit is 10.
	if p, err := s.Top(ctx, ns, analyticsv1.Window_WINDOW_ALL_TIME, 0, ""); err != nil || len(p.Items) != 10 {
		t.Fatalf("limit 0: %d items, %v; want 10", len(p.Items), err)
	}
}

// TestBadInput: every refused request is a FieldError naming its field,
// and changes no key.
func TestBadInput(t *testing.T) {
	now := time.Now()
	s, keys := newStore(t, antest.NewClock(now))
	apply(t, s, antest.Like(true, ns, "a", "u", antest.Version(now, 0), now), antest.Like(true, ns, "b", "u", antest.Version(now, 1), now))
	ctx := context.Background()
	good, err := s.Top(ctx, ns, analyticsv1.Window_WINDOW_ALL_TIME, 1, "")
	if err != nil {
		t.Fatal(err)
	}
	before := keys()
	for name, c := range map[string]struct {
		ns    string
		w     analyticsv1.Window
		limit int32
		token string
		field string
	}{
		"empty namespace": {"", analyticsv1.Window_WINDOW_HOUR, 10, "", "namespace"},
		"upper namespace": {"Article", analyticsv1.Window_WINDOW_HOUR, 10, "", "namespace"},
		"long namespace":  {"abcdefghijabcdefghijabcdefghijabc", analyticsv1.Window_WINDOW_HOUR, 10, "", "namespace"},
		"no window":       {ns, analyticsv1.Window_WINDOW_UNSPECIFIED, 10, "", "window"},
		"unknown window":  {ns, analyticsv1.Window(42), 10, "", "window"},
		"negative limit":  {ns, analyticsv1.Window_WINDOW_HOUR, -1, "", "limit"},
		"limit 101":       {ns, analyticsv1.Window_WINDOW_HOUR, 101, "", "limit"},
		"garbage token":   {ns, analyticsv1.Window_WINDOW_HOUR, 10, "%%%not-base64", "page_token"},
		"base64 garbage":  {ns, analyticsv1.Window_WINDOW_HOUR, 10, "aGVsbG8", "page_token"},
		"forged snapshot": {ns, analyticsv1.Window_WINDOW_ALL_TIME, 10, "MXxhcnRpY2xlfDR8MDAwMDAwMDAwMDAwMDAwMHwx", "page_token"},
		"other window":    {ns, analyticsv1.Window_WINDOW_HOUR, 10, good.Next, "page_token"},
		"other namespace": {"comment", analyticsv1.Window_WINDOW_ALL_TIME, 10, good.Next, "page_token"},
		"oversized token": {ns, analyticsv1.Window_WINDOW_HOUR, 10, string(make([]byte, 300)), "page_token"},
		"negative offset": {ns, analyticsv1.Window_WINDOW_ALL_TIME, 10, "MXxhcnRpY2xlfDR8MDAwMDAwMDAwMDAwMDAwMHwtMQ", "page_token"},
	} {
		_, err := s.Top(ctx, c.ns, c.w, c.limit, c.token)
		var fe *domain.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%s: %v, want a FieldError on %s", name, err, c.field)
		}
	}
	if _, _, err := s.Stats(ctx, analyticsv1.StatsWindow(9), ""); err == nil {
		t.Errorf("unknown stats window accepted")
	}
	if after := keys(); after != before {
		t.Errorf("bad requests changed the keys: %d before, %d after", before, after)
	}
}

// TestAPIStats: calls per procedure and code and latency percentiles equal
// what was fed, once per event id, per window.
func TestAPIStats(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 30, 35, 0, time.UTC)
	clock := antest.NewClock(now)
	s, _ := newStore(t, clock)
	const like, get = "/highgopress.counter.v1.CounterService/Like", "/highgopress.counter.v1.CounterService/GetCounts"
	hist := map[int32]int64{80: 50, 90: 40, 100: 9, 120: 1} // 2^10 µs ≈ 1 ms, …, 2^15 µs ≈ 33 ms
	evs := []*eventsv1.Event{
		antest.APICall("a1", like, "ok", 100, now, hist),
		antest.APICall("a2", like, "unauthenticated", 3, now.Add(-20*time.Second), nil),
		antest.APICall("a3", like, "ok", 7, now.Add(-2*time.Minute), nil),              // out of the minute
		antest.APICall("a4", get, "resource_exhausted", 5, now.Add(-2*time.Hour), nil), // only the day
		antest.APICall("a5", get, "ok", 1, now.Add(-25*time.Hour), nil),                // nowhere
	}
	apply(t, s, evs...)
	if res := apply(t, s, evs...); res.APICalls != 0 || res.Duplicates != 4 {
		t.Fatalf("redelivery: %+v, want 4 duplicates (the fifth is out of every window)", res)
	}
	ctx := context.Background()
	type row struct {
		proc  string
		calls int64
		codes map[string]int64
	}
	for w, want := range map[analyticsv1.StatsWindow][]row{
		analyticsv1.StatsWindow_STATS_WINDOW_MINUTE: {{like, 103, map[string]int64{"ok": 100, "unauthenticated": 3}}},
		analyticsv1.StatsWindow_STATS_WINDOW_HOUR:   {{like, 110, map[string]int64{"ok": 107, "unauthenticated": 3}}},
		analyticsv1.StatsWindow_STATS_WINDOW_DAY: {
			{get, 5, map[string]int64{"resource_exhausted": 5}},
			{like, 110, map[string]int64{"ok": 107, "unauthenticated": 3}},
		},
	} {
		got, asOf, err := s.Stats(ctx, w, "")
		if err != nil {
			t.Fatal(err)
		}
		if !asOf.Equal(now) {
			t.Errorf("as_of %v", asOf)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d procedures, want %d: %+v", w, len(got), len(want), got)
		}
		for i, r := range want {
			if got[i].Procedure != r.proc || got[i].Calls != r.calls || fmt.Sprint(got[i].Codes) != fmt.Sprint(r.codes) {
				t.Errorf("%s: %+v, want %+v", w, got[i], r)
			}
		}
	}
	got, _, err := s.Stats(ctx, analyticsv1.StatsWindow_STATS_WINDOW_MINUTE, like)
	if err != nil || len(got) != 1 || got[0].Latency == nil {
		t.Fatalf("filtered: %+v %v", got, err)
	}
	l := got[0].Latency
	if l.P50 != redisstore.BucketValue(80) || l.P90 != redisstore.BucketValue(90) || l.P99 != redisstore.BucketValue(100) || l.Max != redisstore.BucketValue(120) {
		t.Errorf("latency %+v, want buckets 80, 90, 100, 120", l)
	}
	// Relative error of a bucket's value below 5 %: 1000 µs lies in bucket 80.
	if v := redisstore.BucketValue(80); v < 0.95*1000 || v > 1.05*1000 {
		t.Errorf("bucket 80 stands for %v µs, want 1000 ± 5 %%", v)
	}
	clock.Set(now.Add(time.Minute))
	if got, _, _ := s.Stats(ctx, analyticsv1.StatsWindow_STATS_WINDOW_MINUTE, ""); len(got) != 0 {
		t.Errorf("minute window a minute later: %+v, want empty", got)
	}
}
