package pipetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/identity"
)

// Load drives the real counter service over Connect with a mix of likes,
// unlikes, flips, duplicate sends, increments (some re-sent with the same
// idempotency key) and follows/unfollows from Users users, each user one
// goroutine sending one request at a time. Only ACKNOWLEDGED responses enter
// the oracle; a failed request is recorded in Errors (its outcome is
// unknown, so a test with failures cannot compare exactly).
type Load struct {
	Counters counterv1connect.CounterServiceClient
	Follows  counterv1connect.FollowServiceClient
	Signer   *identity.Signer
	Users    int
	Items    int    // per namespace
	Seed     uint64 // per-user random streams derive from it
	// Pace is the pause between two requests of one user (0: none), so a
	// test can keep writes flowing for a while at a bounded rate.
	Pace time.Duration
	// NoResend stops re-sending earlier increments with their idempotency
	// key: the records do not survive a loss of Redis's data.
	NoResend bool
	// Pause, when set, is read-locked around every request: a test that
	// locks it waits for the requests in flight and holds all users.
	Pause *sync.RWMutex
	// Stale counts answers whose changed flag contradicts the user's own
	// history instead of failing on them: after Redis lost its data, state
	// rebuilt while the user's latest events were still on their way to
	// MySQL answers from the older state until it is settled. The oracle
	// (the last state each user asked for) is the same either way.
	Stale bool

	acked atomic.Int64
}

// Acked is the number of acknowledged requests so far.
func (l *Load) Acked() int64 { return l.acked.Load() }

// LoadResult is what the acknowledged responses imply.
type LoadResult struct {
	Acked  int64
	Want   State   // the durable state the pipeline must reach
	Errors []error // failed requests and responses contradicting the history
	// Stale is the number of changed flags that contradicted the history,
	// counted instead of failing under Load.Stale.
	Stale int
}

type incrRec struct {
	ns, item, metric string
	delta, value     int64
}

type userState struct {
	likes   map[[2]string]bool // (ns, item) → liked
	follows map[string]bool    // target → following
	incrs   map[string]incrRec // idempotency key → first acknowledged application
	keys    []string
	errs    []error
	stale   int
}

// Run sends at most opsPerUser requests per user, or fewer once stop is
// closed, and returns when every user is done.
func (l *Load) Run(ctx context.Context, opsPerUser int, stop <-chan struct{}) LoadResult {
	states := make([]*userState, l.Users)
	var wg sync.WaitGroup
	for u := range l.Users {
		st := &userState{likes: map[[2]string]bool{}, follows: map[string]bool{}, incrs: map[string]incrRec{}}
		states[u] = st
		wg.Go(func() { l.user(ctx, u, opsPerUser, stop, st) })
	}
	wg.Wait()
	res := LoadResult{Acked: l.acked.Load(), Want: State{Likes: map[string]bool{}, Follows: map[string]bool{}, Counts: map[string]int64{}, Users: map[string][2]int64{}}}
	for u, st := range states {
		user := "u" + strconv.Itoa(u)
		res.Errors = append(res.Errors, st.errs...)
		res.Stale += st.stale
		for it, liked := range st.likes {
			if liked {
				res.Want.Likes[it[0]+"/"+it[1]+"/"+user] = true
				res.Want.Counts[it[0]+"/"+it[1]+"/likes"]++
			}
		}
		for target, on := range st.follows {
			if on {
				res.Want.Follows[user+"/"+target] = true
				a := res.Want.Users[user]
				a[1]++
				res.Want.Users[user] = a
				b := res.Want.Users[target]
				b[0]++
				res.Want.Users[target] = b
			}
		}
		for _, in := range st.incrs {
			res.Want.Counts[in.ns+"/"+in.item+"/"+in.metric] += in.delta
		}
	}
	return res
}

func (l *Load) user(ctx context.Context, u, ops int, stop <-chan struct{}, st *userState) {
	user := "u" + strconv.Itoa(u)
	rng := rand.New(rand.NewPCG(l.Seed, uint64(u)))
	var last func() error // the previous like/unlike, for duplicate sends
	fail := func(format string, args ...any) error {
		return fmt.Errorf("user %s: "+format, append([]any{user}, args...)...)
	}
	setLike := func(ns, item string, like bool) error {
		ref := &counterv1.ItemRef{Namespace: ns, Id: item}
		var changed bool
		if like {
			req := connect.NewRequest(&counterv1.LikeRequest{Item: ref})
			req.Header().Set(identity.Header, l.Signer.Sign(user, counterv1connect.CounterServiceLikeProcedure))
			resp, err := l.Counters.Like(ctx, req)
			if err != nil {
				return fail("like %s/%s: %w", ns, item, err)
			}
			changed = resp.Msg.GetChanged()
		} else {
			req := connect.NewRequest(&counterv1.UnlikeRequest{Item: ref})
			req.Header().Set(identity.Header, l.Signer.Sign(user, counterv1connect.CounterServiceUnlikeProcedure))
			resp, err := l.Counters.Unlike(ctx, req)
			if err != nil {
				return fail("unlike %s/%s: %w", ns, item, err)
			}
			changed = resp.Msg.GetChanged()
		}
		l.acked.Add(1)
		k := [2]string{ns, item}
		if want := st.likes[k] != like; changed != want {
			if l.Stale {
				st.stale++
			} else {
				st.errs = append(st.errs, fail("like=%v of %s/%s: changed=%v, want %v", like, ns, item, changed, want))
			}
		}
		st.likes[k] = like
		return nil
	}
	setFollow := func(target string, on bool) error {
		var changed bool
		if on {
			req := connect.NewRequest(&counterv1.FollowRequest{UserId: target})
			req.Header().Set(identity.Header, l.Signer.Sign(user, counterv1connect.FollowServiceFollowProcedure))
			resp, err := l.Follows.Follow(ctx, req)
			if err != nil {
				return fail("follow %s: %w", target, err)
			}
			changed = resp.Msg.GetChanged()
		} else {
			req := connect.NewRequest(&counterv1.UnfollowRequest{UserId: target})
			req.Header().Set(identity.Header, l.Signer.Sign(user, counterv1connect.FollowServiceUnfollowProcedure))
			resp, err := l.Follows.Unfollow(ctx, req)
			if err != nil {
				return fail("unfollow %s: %w", target, err)
			}
			changed = resp.Msg.GetChanged()
		}
		l.acked.Add(1)
		if want := st.follows[target] != on; changed != want {
			if l.Stale {
				st.stale++
			} else {
				st.errs = append(st.errs, fail("follow=%v of %s: changed=%v, want %v", on, target, changed, want))
			}
		}
		st.follows[target] = on
		return nil
	}
	increment := func(key string, in incrRec) error {
		req := connect.NewRequest(&counterv1.IncrementRequest{
			Item: &counterv1.ItemRef{Namespace: in.ns, Id: in.item}, Metric: in.metric, Delta: in.delta, IdempotencyKey: key,
		})
		req.Header().Set(identity.Header, l.Signer.Sign(user, counterv1connect.CounterServiceIncrementProcedure))
		resp, err := l.Counters.Increment(ctx, req)
		if err != nil {
			return fail("increment %s: %w", key, err)
		}
		l.acked.Add(1)
		if first, ok := st.incrs[key]; ok {
			if resp.Msg.GetValue() != first.value {
				st.errs = append(st.errs, fail("increment %s re-sent: value %d, first answer %d", key, resp.Msg.GetValue(), first.value))
			}
			return nil
		}
		in.value = resp.Msg.GetValue()
		st.incrs[key] = in
		st.keys = append(st.keys, key)
		return nil
	}
	var timer *time.Timer
	if l.Pace > 0 {
		timer = time.NewTimer(l.Pace)
		defer timer.Stop()
	}
	for i := range ops {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		if timer != nil && i > 0 {
			timer.Reset(l.Pace)
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
		if l.Pause != nil {
			l.Pause.RLock()
		}
		ns := []string{"article", "comment"}[rng.IntN(2)]
		item := "i" + strconv.Itoa(rng.IntN(l.Items))
		var err error
		switch r := rng.IntN(100); {
		case r < 35: // like or unlike, biased to like
			like := rng.IntN(3) != 0
			last = func() error { return setLike(ns, item, like) }
			err = last()
		case r < 45: // flip: the opposite of the current state, twice
			like := !st.likes[[2]string{ns, item}]
			if err = setLike(ns, item, like); err == nil {
				err = setLike(ns, item, !like)
			}
		case r < 52: // the previous like/unlike sent again
			if last != nil {
				err = last()
			}
		case r < 67: // increment with a new key
			key := "idem-" + user + "-" + strconv.Itoa(i) // 8..128 characters
			err = increment(key, incrRec{ns: ns, item: item, metric: []string{"views", "shares"}[rng.IntN(2)], delta: int64(1 + rng.IntN(5))})
		case r < 77: // an earlier increment re-sent with its key
			if len(st.keys) > 0 && !l.NoResend {
				key := st.keys[rng.IntN(len(st.keys))]
				err = increment(key, st.incrs[key])
			}
		default: // follow or unfollow
			v := rng.IntN(l.Users)
			if v != u {
				err = setFollow("u"+strconv.Itoa(v), rng.IntN(3) != 0)
			}
		}
		if l.Pause != nil {
			l.Pause.RUnlock()
		}
		if err != nil {
			st.errs = append(st.errs, err)
			return // the outcome is unknown: stop this user
		}
	}
}
