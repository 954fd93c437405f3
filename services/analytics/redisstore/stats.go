package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	analyticsv1 "github.com/highgopress/highgopress/gen/highgopress/analytics/v1"
	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/services/analytics/domain"
	"github.com/highgopress/highgopress/services/analytics/window"
)

// Stats returns the API calls of window w per procedure (sorted by name),
// or only procedure's when it is not empty, and the time they are as of.
func (s *Store) Stats(ctx context.Context, w analyticsv1.StatsWindow, procedure string) ([]domain.ProcedureStats, time.Time, error) {
	sp, ok := window.StatsSpan(w)
	if !ok {
		return nil, time.Time{}, domain.Invalid("window", "must be STATS_WINDOW_MINUTE, STATS_WINDOW_HOUR or STATS_WINDOW_DAY, got %s", w)
	}
	if len(procedure) > events.MaxProcedure {
		return nil, time.Time{}, domain.Invalid("procedure", "must be at most %d characters", events.MaxProcedure)
	}
	now := s.o.clock.Now()
	first, last := sp.Range(now)
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, 0, last-first+1)
	for i := first; i <= last; i++ {
		cmds = append(cmds, pipe.HGetAll(ctx, s.k.apiBucket(sp.Grain, i)))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, now, fmt.Errorf("%w: read API statistics: %w", errUnavailable, err)
	}
	type acc struct {
		st   domain.ProcedureStats
		hist map[int32]int64
	}
	procs := map[string]*acc{}
	get := func(p string) *acc {
		a := procs[p]
		if a == nil {
			a = &acc{st: domain.ProcedureStats{Procedure: p, Codes: map[string]int64{}}, hist: map[int32]int64{}}
			procs[p] = a
		}
		return a
	}
	for _, c := range cmds {
		for f, v := range c.Val() {
			kind, proc, rest, ok := parseField(f)
			if !ok || procedure != "" && proc != procedure {
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				continue
			}
			a := get(proc)
			switch kind {
			case 'c':
				a.st.Calls += n
				a.st.Codes[rest] += n
			case 'h':
				b, err := strconv.ParseInt(rest, 10, 32)
				if err == nil {
					a.hist[int32(b)] += n
				}
			}
		}
	}
	out := make([]domain.ProcedureStats, 0, len(procs))
	for _, a := range procs {
		a.st.Latency = Percentiles(a.hist)
		out = append(out, a.st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Procedure < out[j].Procedure })
	return out, now, nil
}

// BucketValue is the latency (µs) a histogram bucket stands for: the
// geometric middle of (2^((b-1)/8), 2^(b/8)], within 4.4 % of every
// latency in it; bucket 0 (at most 1 µs) stands for 1 µs.
func BucketValue(b int32) float64 {
	if b <= 0 {
		return 1
	}
	return math.Exp2((float64(b) - 0.5) / 8)
}

// Percentiles estimates p50, p90, p99 and the maximum (µs) of an
// exponential histogram (bucket → count); nil when it is empty. A
// percentile is the value of the bucket holding the ceil(q·n)-th latency.
func Percentiles(hist map[int32]int64) *domain.Latency {
	var n int64
	bs := make([]int32, 0, len(hist))
	for b, c := range hist {
		if c > 0 {
			n += c
			bs = append(bs, b)
		}
	}
	if n == 0 {
		return nil
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i] < bs[j] })
	at := func(q float64) float64 {
		rank := int64(math.Ceil(q * float64(n)))
		var cum int64
		for _, b := range bs {
			cum += hist[b]
			if cum >= rank {
				return BucketValue(b)
			}
		}
		return BucketValue(bs[len(bs)-1])
	}
	return &domain.Latency{P50: at(0.5), P90: at(0.9), P99: at(0.99), Max: BucketValue(bs[len(bs)-1])}
}
