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
//
// The chunks are pipelined: the script arguments of the next chunk are
// built while Redis runs the current one. A failed chunk stops the batch
// (the chunks before it stay applied; applying them again is harmless).
func (s *Store) Apply(ctx context.Context, evs []*eventsv1.Event) (Result, error) {
	var total Result
	if len(evs) == 0 {
		return total, nil
	}
	chunk := func(start int) []*eventsv1.Event { return evs[start:min(start+s.o.chunk, len(evs))] }
	cur := s.prepare(chunk(0))
	for start := 0; start < len(evs); start += s.o.chunk {
		var next chan *prepared
		if n := start + s.o.chunk; n < len(evs) {
			next = make(chan *prepared, 1)
			go func() { next <- s.prepare(chunk(n)) }()
		}
		res, err := s.run(ctx, cur)
		total.add(res)
		if err != nil {
			if next != nil {
				<-next // never leave the preparation behind
			}
			return total, err
		}
		if next != nil {
			cur = <-next
		}
	}
	return total, nil
}

// prepared is one chunk's script arguments.
type prepared struct {
	args   []any
	events int    // likes and API calls sent to the script
	res    Result // what was decided without Redis (skipped, too old)
}

// bucketRef is a bucket key of the chunk, boxed once for every event that
// lands in it.
type bucketRef struct {
	key any
	ttl time.Duration
}

type bucketID struct {
	ns    string
	grain byte // 'm' or 'h'
	index int64
}

// nsKeys are a namespace's all-time key and name, boxed once per chunk.
type nsKeys struct{ all, ns any }

// empty is the boxed "" of a bucket outside every window.
var empty any = ""

// prepare builds the script arguments of one chunk. Every key that many
// events share (a namespace's all-time set, a minute or hour bucket) is
// built and boxed once per chunk; bucket TTLs are computed once per bucket.
func (s *Store) prepare(evs []*eventsv1.Event) *prepared {
	now := s.o.clock.Now()
	p := &prepared{}
	var (
		likes   = make([]any, 0, likeArgs*len(evs))
		api     []any
		nl, na  int
		exp     = map[string]time.Duration{}
		buckets = map[bucketID]bucketRef{}
		spaces  = map[string]nsKeys{}
	)
	expire := func(key string, ttl time.Duration) {
		if ttl > exp[key] {
			exp[key] = ttl
		}
	}
	bucket := func(ns string, sp window.Span, g byte, at time.Time) any {
		id := bucketID{ns: ns, grain: g, index: sp.Grain.Index(at)}
		b, ok := buckets[id]
		if !ok {
			b = bucketRef{key: empty, ttl: sp.TTL(id.index, now)}
			if b.ttl > 0 {
				key := s.k.bucket(ns, sp.Grain, id.index)
				b.key = key
				expire(key, b.ttl)
			}
			buckets[id] = b
		}
		return b.key
	}
	for _, ev := range evs {
		switch ev.GetKind() {
		case eventsv1.Kind_KIND_LIKE, eventsv1.Kind_KIND_UNLIKE:
			ns, item, at := ev.GetNamespace(), ev.GetItemId(), EventTime(ev)
			nk, ok := spaces[ns]
			if !ok {
				nk = nsKeys{all: s.k.all(ns), ns: ns}
				spaces[ns] = nk
			}
			likes = append(likes, s.k.pair(ns, item), ev.GetUserId(),
				pairState(ev.GetKind() == eventsv1.Kind_KIND_LIKE, ev.GetVersion()),
				nk.all, item, bucket(ns, window.HourSpan, 'm', at), bucket(ns, window.WeekSpan, 'h', at), nk.ns)
			nl++
		case eventsv1.Kind_KIND_API_CALL:
			at := EventTime(ev)
			seenMinute := window.Minute.Index(at)
			seenTTL := window.StatsDaySpan.TTL(window.StatsDaySpan.Grain.Index(at), now)
			if seenTTL <= 0 {
				p.res.Ignored++ // older than every statistics window
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
			p.res.Skipped++
		}
	}
	p.events = nl + na
	if p.events == 0 {
		return p
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
	p.args = args
	return p
}

// likeArgs is the number of script arguments per like or unlike.
const likeArgs = 8

// run applies a prepared chunk with one script call.
func (s *Store) run(ctx context.Context, p *prepared) (Result, error) {
	res := p.res
	if p.events == 0 {
		return res, nil
	}
	out, err := applyScript.Run(ctx, s.rdb, nil, p.args...).Int64Slice()
	if err != nil {
		return res, fmt.Errorf("%w: apply %d events: %w", errUnavailable, p.events, err)
	}
	if len(out) == 4 {
		res.Transitions += int(out[0])
		res.Ignored += int(out[1])
		res.APICalls += int(out[2])
		res.Duplicates += int(out[3])
	}
	return res, nil
}

// pairState is a pair's stored value: "+" (liked) or "-", then the
// event's version as 20 digits, built with one allocation.
func pairState(liked bool, v uint64) string {
	var b [21]byte
	b[0] = '-'
	if liked {
		b[0] = '+'
	}
	for i := 20; i >= 1; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return string(b[:])
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
