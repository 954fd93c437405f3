package pipetest

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"math/rand/v2"
	"strconv"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/platform/durabledb"
)

// Op is one state change as the counter's Lua script would append it to the
// outbox (only operations that changed state, or new increments). Event
// gives the event the relay makes of it; tests/pipeline has its outbox
// fields.
type Op struct {
	Kind      string // like, unlike, incr, follow, unfollow
	User      string
	Namespace string
	Item      string
	Target    string
	Metric    string
	Delta     int64
	IdemKey   string
}

// Event returns the event the relay makes of the op's outbox entry, with
// the given event id and version (as the relay derives them from the
// entry's stream id; versions must grow in op order).
func (o Op) Event(id string, version uint64) *eventsv1.Event {
	ev := &eventsv1.Event{EventId: id, UserId: o.User, Version: version}
	switch o.Kind {
	case "like":
		ev.Kind, ev.Delta, ev.Namespace, ev.ItemId = eventsv1.Kind_KIND_LIKE, 1, o.Namespace, o.Item
	case "unlike":
		ev.Kind, ev.Delta, ev.Namespace, ev.ItemId = eventsv1.Kind_KIND_UNLIKE, -1, o.Namespace, o.Item
	case "follow":
		ev.Kind, ev.Delta, ev.TargetUserId = eventsv1.Kind_KIND_FOLLOW, 1, o.Target
	case "unfollow":
		ev.Kind, ev.Delta, ev.TargetUserId = eventsv1.Kind_KIND_UNFOLLOW, -1, o.Target
	case "incr":
		ev.Kind, ev.Delta, ev.Namespace, ev.ItemId = eventsv1.Kind_KIND_INCREMENT, o.Delta, o.Namespace, o.Item
		ev.Metric, ev.IdempotencyKey = o.Metric, o.IdemKey
	}
	return ev
}

// Events returns the events of ops in order, with event ids "e<i>" and
// versions first, first+1, … .
func Events(ops []Op, first uint64) []*eventsv1.Event {
	out := make([]*eventsv1.Event, len(ops))
	for i, op := range ops {
		v := first + uint64(i)
		out[i] = op.Event("e"+strconv.FormatUint(v, 10), v)
	}
	return out
}

// State is the durable state the sink must reach.
type State struct {
	Likes   map[string]bool  // "ns/item/user" liked
	Follows map[string]bool  // "follower/followee" active
	Counts  map[string]int64 // "ns/item/metric" → value (likes included), zero omitted
	Users   map[string][2]int64
}

// Oracle simulates the counter's Redis state and records the ops it emits.
type Oracle struct {
	rng     *rand.Rand
	likes   map[string]bool
	follows map[string]bool
	Ops     []Op
	counts  map[string]int64
	users   map[string][2]int64
	seq     int
	// Prefix is put before every generated user and item id, so tests that
	// share a Redis do not share keys.
	Prefix string
}

// NewOracle returns an oracle with a fixed seed.
func NewOracle(seed uint64) *Oracle {
	return &Oracle{
		rng:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		likes:   map[string]bool{},
		follows: map[string]bool{},
		counts:  map[string]int64{},
		users:   map[string][2]int64{},
	}
}

// Generate performs n random requests from users × items (with repeats, so
// many are no-ops that emit nothing, as in Redis) and returns the emitted ops.
func (o *Oracle) Generate(n, users, items int) []Op {
	start := len(o.Ops)
	for range n {
		u := o.Prefix + "u" + strconv.Itoa(o.rng.IntN(users))
		ns := []string{"article", "comment"}[o.rng.IntN(2)]
		item := o.Prefix + "i" + strconv.Itoa(o.rng.IntN(items))
		switch r := o.rng.IntN(10); {
		case r < 6:
			o.setLike(u, ns, item, o.rng.IntN(3) != 0)
		case r < 8:
			v := o.Prefix + "u" + strconv.Itoa(o.rng.IntN(users))
			if v != u {
				o.setFollow(u, v, o.rng.IntN(3) != 0)
			}
		default:
			o.seq++
			op := Op{Kind: "incr", User: u, Namespace: ns, Item: item, Metric: []string{"views", "shares"}[o.rng.IntN(2)],
				Delta: int64(1 + o.rng.IntN(5)), IdemKey: "k" + strconv.Itoa(o.seq)}
			o.counts[ns+"/"+item+"/"+op.Metric] += op.Delta
			o.Ops = append(o.Ops, op)
		}
	}
	return o.Ops[start:]
}

func (o *Oracle) setLike(u, ns, item string, like bool) {
	k := ns + "/" + item + "/" + u
	if o.likes[k] == like {
		return // no state change: Redis emits nothing
	}
	o.likes[k] = like
	kind, d := "like", int64(1)
	if !like {
		kind, d = "unlike", -1
	}
	o.counts[ns+"/"+item+"/likes"] += d
	o.Ops = append(o.Ops, Op{Kind: kind, User: u, Namespace: ns, Item: item})
}

func (o *Oracle) setFollow(u, v string, follow bool) {
	k := u + "/" + v
	if o.follows[k] == follow {
		return
	}
	o.follows[k] = follow
	kind, d := "follow", int64(1)
	if !follow {
		kind, d = "unfollow", -1
	}
	fu := o.users[u]
	fu[1] += d
	o.users[u] = fu
	fv := o.users[v]
	fv[0] += d
	o.users[v] = fv
	o.Ops = append(o.Ops, Op{Kind: kind, User: u, Target: v})
}

// Want returns the state the sink must hold after every op was applied.
func (o *Oracle) Want() State {
	s := State{Likes: map[string]bool{}, Follows: map[string]bool{}, Counts: map[string]int64{}, Users: map[string][2]int64{}}
	for k, v := range o.likes {
		if v {
			s.Likes[k] = true
		}
	}
	for k, v := range o.follows {
		if v {
			s.Follows[k] = true
		}
	}
	for k, v := range o.counts {
		if v != 0 {
			s.Counts[k] = v
		}
	}
	for k, v := range o.users {
		if v != [2]int64{} {
			s.Users[k] = v
		}
	}
	return s
}

// Snapshot reads the sink's state from MySQL.
func Snapshot(ctx context.Context, conn *sql.DB) (State, error) {
	q := durabledb.New(conn)
	s := State{Likes: map[string]bool{}, Follows: map[string]bool{}, Counts: map[string]int64{}, Users: map[string][2]int64{}}
	likes, err := q.ListAllLikes(ctx)
	if err != nil {
		return s, err
	}
	for _, l := range likes {
		s.Likes[l.Namespace+"/"+l.ItemID+"/"+l.UserID] = true
	}
	follows, err := q.ListAllFollows(ctx)
	if err != nil {
		return s, err
	}
	for _, f := range follows {
		s.Follows[f.Follower+"/"+f.Followee] = true
	}
	counts, err := q.ListAllItemCounts(ctx)
	if err != nil {
		return s, err
	}
	for _, c := range counts {
		if c.Value != 0 {
			s.Counts[c.Namespace+"/"+c.ItemID+"/"+c.Metric] = c.Value
		}
	}
	users, err := q.ListAllUserCounts(ctx)
	if err != nil {
		return s, err
	}
	for _, u := range users {
		if u.Followers != 0 || u.Following != 0 {
			s.Users[u.UserID] = [2]int64{u.Followers, u.Following}
		}
	}
	return s, nil
}

// Diff describes the first differences between got and want, or "".
func Diff(got, want State) string {
	var out string
	add := func(format string, args ...any) {
		if len(out) < 2000 {
			out += fmt.Sprintf(format, args...) + "; "
		}
	}
	if !maps.Equal(got.Likes, want.Likes) {
		add("likes: got %d rows, want %d", len(got.Likes), len(want.Likes))
	}
	if !maps.Equal(got.Follows, want.Follows) {
		add("follows: got %d rows, want %d", len(got.Follows), len(want.Follows))
	}
	for k, v := range want.Counts {
		if got.Counts[k] != v {
			add("count %s: got %d want %d", k, got.Counts[k], v)
		}
	}
	for k, v := range got.Counts {
		if _, ok := want.Counts[k]; !ok {
			add("count %s: got %d want 0", k, v)
		}
	}
	for k, v := range want.Users {
		if got.Users[k] != v {
			add("user %s: got %v want %v", k, got.Users[k], v)
		}
	}
	for k, v := range got.Users {
		if _, ok := want.Users[k]; !ok {
			add("user %s: got %v want zero", k, v)
		}
	}
	return out
}
