package redisstore

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/services/analytics/domain"
	"github.com/highgopress/highgopress/services/analytics/window"
)

var errUnavailable = domain.ErrUnavailable

// Result counts what a batch did.
type Result struct {
	Transitions int // likes and unlikes that changed a pair's state
	Ignored     int // stale or replayed likes and unlikes, or ones that kept the state
	APICalls    int // API_CALL events applied
	Duplicates  int // API_CALL events seen before
	Skipped     int // events of other kinds (follows, increments)
}

func (r *Result) add(o Result) {
	r.Transitions += o.Transitions
	r.Ignored += o.Ignored
	r.APICalls += o.APICalls
	r.Duplicates += o.Duplicates
	r.Skipped += o.Skipped
}

// EventTime is when an event happened: its time, or for a like without
// one the milliseconds of its version (ms<<20 | seq).
func EventTime(ev *eventsv1.Event) time.Time {
	if t := ev.GetTime(); t != nil && (t.GetSeconds() != 0 || t.GetNanos() != 0) {
		return t.AsTime()
	}
	return time.UnixMilli(int64(ev.GetVersion() >> 20))
}

// version20 is v as 20 zero-padded digits: string order is numeric order.
func version20(v uint64) string {
	s := strconv.FormatUint(v, 10)
	const zeros = "00000000000000000000"
	return zeros[:20-len(s)] + s
}

// Apply applies valid events (events.Decode) in one atomic Lua step per
// chunk of events:
//
//   - a LIKE or UNLIKE changes its (user, item) pair only when its version
//     is newer than the stored one, and moves the item's scores (all-time,
//     its minute bucket, its hour bucket) only when the pair's state
//     changes — the MySQL sink's rule, so replays never double count and
//     reordering never resurrects a like;
//   - an API_CALL is applied once per event id (a set per minute of event
//     time, kept as long as the buckets it fed);
//   - other kinds are skipped.
//
// A bucket already outside every window reading it at the clock's now is
// not written. A batch that changed a namespace's rankings increments its
// generation and publishes it on Channel.
func (s *Store) Apply(ctx context.Context, evs []*eventsv1.Event) (Result, error) {
	var total Result
	for start := 0; start < len(evs); start += s.o.chunk {
		res, err := s.applyChunk(ctx, evs[start:min(start+s.o.chunk, len(evs))])
		total.add(res)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (s *Store) applyChunk(ctx context.Context, evs []*eventsv1.Event) (Result, error) {
	now := s.o.clock.Now()
	var (
		res   Result
		likes []any
		api   []any
		nl    int
		na    int
		exp   = map[string]time.Duration{}
	)
	expire := func(key string, ttl time.Duration) {
		if ttl > exp[key] {
			exp[key] = ttl
		}
	}
	for _, ev := range evs {
		switch ev.GetKind() {
		case eventsv1.Kind_KIND_LIKE, eventsv1.Kind_KIND_UNLIKE:
			ns, item, at := ev.GetNamespace(), ev.GetItemId(), EventTime(ev)
			ver := version20(ev.GetVersion())
			state := "-" + ver
			if ev.GetKind() == eventsv1.Kind_KIND_LIKE {
				state = "+" + ver
			}
			mk, hk := "", ""
			mi := window.HourSpan.Grain.Index(at)
			if ttl := window.HourSpan.TTL(mi, now); ttl > 0 {
				mk = s.k.bucket(ns, window.Minute, mi)
				expire(mk, ttl)
			}
			hi := window.WeekSpan.Grain.Index(at)
			if ttl := window.WeekSpan.TTL(hi, now); ttl > 0 {
				hk = s.k.bucket(ns, window.Hour, hi)
				expire(hk, ttl)
			}
			likes = append(likes, s.k.pair(ns, item), ev.GetUserId(), state, ver, s.k.all(ns), item, mk, hk, ns)
			nl++
		case eventsv1.Kind_KIND_API_CALL:
			at := EventTime(ev)
			seenMinute := window.Minute.Index(at)
			seenTTL := window.StatsDaySpan.TTL(window.StatsDaySpan.Grain.Index(at), now)
			if seenTTL <= 0 {
				res.Ignored++ // older than every statistics window
				continue
			}
			seen := s.k.apiSeen(seenMinute)
			expire(seen, seenTTL)
			var ops []any
			for _, sp := range window.StatsSpans {
				i := sp.Grain.Index(at)
				ttl := sp.TTL(i, now)
				if ttl <= 0 {
					continue
				}
				key := s.k.apiBucket(sp.Grain, i)
				expire(key, ttl)
				ops = append(ops, key, callField(ev.GetProcedure(), ev.GetCode()), ev.GetDelta())
				for b, n := range ev.GetLatencyUsBuckets() {
					if n > 0 {
						ops = append(ops, key, histField(ev.GetProcedure(), max(b, 0)), n)
					}
				}
			}
			api = append(api, seen, ev.GetEventId(), len(ops)/3)
			api = append(api, ops...)
			na++
		default:
			res.Skipped++
		}
	}
	if nl == 0 && na == 0 {
		return res, nil
	}
	args := make([]any, 0, 5+len(likes)+len(api)+1+2*len(exp))
	args = append(args, nl, na, s.k.channel(), s.k.genPrefix())
	args = append(args, likes...)
	args = append(args, api...)
	ekeys := make([]string, 0, len(exp))
	for k := range exp {
		ekeys = append(ekeys, k)
	}
	sort.Strings(ekeys)
	args = append(args, len(ekeys))
	for _, k := range ekeys {
		args = append(args, k, ms(exp[k]))
	}
	out, err := applyScript.Run(ctx, s.rdb, nil, args...).Int64Slice()
	if err != nil {
		return res, fmt.Errorf("%w: apply %d events: %w", errUnavailable, nl+na, err)
	}
	if len(out) == 4 {
		res.Transitions += int(out[0])
		res.Ignored += int(out[1])
		res.APICalls += int(out[2])
		res.Duplicates += int(out[3])
	}
	return res, nil
}

// callField and histField name the fields of an API statistics bucket (a
// hash): "c<len>:<procedure><code>" counts calls, "h<len>:<procedure><b>"
// counts latencies in histogram bucket b. The length prefix keeps any
// procedure name unambiguous.
func callField(proc, code string) string {
	return "c" + strconv.Itoa(len(proc)) + ":" + proc + code
}

func histField(proc string, b int32) string {
	return "h" + strconv.Itoa(len(proc)) + ":" + proc + strconv.Itoa(int(b))
}

// parseField splits a bucket field into its kind ('c' or 'h'), procedure
// and rest (code or histogram bucket).
func parseField(f string) (kind byte, proc, rest string, ok bool) {
	if len(f) < 3 {
		return 0, "", "", false
	}
	colon := -1
	for i := 1; i < len(f); i++ {
		if f[i] == ':' {
			colon = i
			break
		}
	}
	if colon < 0 {
		return 0, "", "", false
	}
	n, err := strconv.Atoi(f[1:colon])
	if err != nil || n < 0 || colon+1+n > len(f) {
		return 0, "", "", false
	}
	return f[0], f[colon+1 : colon+1+n], f[colon+1+n:], true
}
