// Package window is the time arithmetic of the analytics windows: which
// buckets an event lands in, which buckets a window reads, and how long a
// bucket must live. Time comes from a Clock so tests can place events and
// reads on either side of a boundary.
package window

import (
	"time"

	analyticsv1 "github.com/highgopress/highgopress/gen/highgopress/analytics/v1"
)

// Clock tells the time. Production uses System; tests use a settable one.
type Clock interface{ Now() time.Time }

// ClockFunc adapts a function to Clock.
type ClockFunc func() time.Time

// Now implements Clock.
func (f ClockFunc) Now() time.Time { return f() }

// System is the real clock.
var System Clock = ClockFunc(time.Now)

// Grain is a bucket size.
type Grain struct {
	Name string        // key segment: "s10", "m", "h"
	Size time.Duration // bucket length
}

// The bucket grains. Likes use minute and hour buckets; API calls use
// ten-second, minute and hour buckets.
var (
	TenSeconds = Grain{Name: "s", Size: 10 * time.Second}
	Minute     = Grain{Name: "m", Size: time.Minute}
	Hour       = Grain{Name: "h", Size: time.Hour}
)

// Slack is how long a bucket outlives the last window that reads it, so
// that a read at a window's edge never races the bucket's expiry.
const Slack = 5 * time.Minute

// Index is the bucket of t in g: whole bucket lengths since the Unix epoch.
func (g Grain) Index(t time.Time) int64 { return t.UnixMilli() / g.Size.Milliseconds() }

// Start is the start time of bucket i.
func (g Grain) Start(i int64) time.Time { return time.UnixMilli(i * g.Size.Milliseconds()) }

// Span is a window made of the last N buckets of a grain, the current one
// included.
type Span struct {
	Grain Grain
	N     int64
}

// Range returns the first and last bucket the span reads at now.
func (s Span) Range(now time.Time) (first, last int64) {
	last = s.Grain.Index(now)
	return last - s.N + 1, last
}

// Retention is how long a bucket of the span must be kept after it
// started: the span, and Slack.
func (s Span) Retention() time.Duration { return time.Duration(s.N)*s.Grain.Size + Slack }

// TTL returns how long bucket i must still live at now: until Retention
// after its start (<= 0: it is already outside every window that reads
// it, and must not be written).
func (s Span) TTL(i int64, now time.Time) time.Duration {
	return s.Grain.Start(i).Add(s.Retention()).Sub(now)
}

// Ranking windows: the hour reads the last 60 minute buckets, the day the
// last 24 hour buckets, the week the last 168 hour buckets (so a window
// covers between N-1 and N whole buckets, the current partial bucket
// included). All-time is one set, not a span.
var (
	HourSpan = Span{Grain: Minute, N: 60}
	DaySpan  = Span{Grain: Hour, N: 24}
	WeekSpan = Span{Grain: Hour, N: 168}
)

// RankingSpan is the span of a ranking window; ok is false for all-time
// and for unknown windows.
func RankingSpan(w analyticsv1.Window) (Span, bool) {
	switch w {
	case analyticsv1.Window_WINDOW_HOUR:
		return HourSpan, true
	case analyticsv1.Window_WINDOW_DAY:
		return DaySpan, true
	case analyticsv1.Window_WINDOW_WEEK:
		return WeekSpan, true
	}
	return Span{}, false
}

// Statistics windows: the minute reads the last 6 ten-second buckets, the
// hour the last 60 minute buckets, the day the last 24 hour buckets.
var (
	StatsMinuteSpan = Span{Grain: TenSeconds, N: 6}
	StatsHourSpan   = Span{Grain: Minute, N: 60}
	StatsDaySpan    = Span{Grain: Hour, N: 24}
)

// StatsSpans are the spans every API call is written to.
var StatsSpans = []Span{StatsMinuteSpan, StatsHourSpan, StatsDaySpan}

// StatsSpan is the span of a statistics window.
func StatsSpan(w analyticsv1.StatsWindow) (Span, bool) {
	switch w {
	case analyticsv1.StatsWindow_STATS_WINDOW_MINUTE:
		return StatsMinuteSpan, true
	case analyticsv1.StatsWindow_STATS_WINDOW_HOUR:
		return StatsHourSpan, true
	case analyticsv1.StatsWindow_STATS_WINDOW_DAY:
		return StatsDaySpan, true
	}
	return Span{}, false
}
