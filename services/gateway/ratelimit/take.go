package ratelimit

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/store/common"
)

// take is one budget a request spends a unit of.
type take struct {
	b *budget
	// key is the budget's Redis key, "<prefix>:<budget>:<id>"; the part
	// after the prefix is the key of the stores' API (they add the prefix).
	key    string
	prefix int
	d      Decision
	done   bool
}

func (l *Limiter) newTake(b *budget, id string) take {
	return take{b: b, key: l.opts.prefix + ":" + b.name + ":" + id, prefix: len(l.opts.prefix) + 1}
}

// storeKey is the key as the ulule stores take it (without the prefix).
func (t *take) storeKey() string { return t.key[t.prefix:] }

// settle records Redis's answer for t.
func (l *Limiter) settle(t *take, lc limiter.Context, now time.Time) {
	if lc.Reached {
		// The window ends at lc.Reset (whole seconds, rounded down: never
		// later than Redis's own expiry).
		l.blocked.put(t.key, time.Unix(lc.Reset, 0), now)
	}
	t.d = l.decision(t.b, lc)
	t.done = true
}

// spendRemote takes the budgets of s not yet done in Redis: with ulule's own
// budget script, all of them in one job of the shared pipelines. A budget
// Redis did not answer stays not done, and the first error is returned.
func (l *Limiter) spendRemote(ctx context.Context, store limiter.Store, s []take, now time.Time) error {
	cctx, cancel := context.WithTimeout(ctx, l.cfg.RedisTimeout)
	defer cancel()
	sha := l.incrSHA.Load()
	if sha == nil {
		// The script was not recorded: the store's own path, one budget
		// at a time.
		var first error
		for i := range s {
			t := &s[i]
			if t.done {
				continue
			}
			lc, err := store.Get(cctx, t.storeKey(), t.b.rate)
			if err != nil {
				first = cmpErr(first, err)
				continue
			}
			l.markUp()
			l.settle(t, lc, now)
		}
		return first
	}
	var cmds [2]redis.Cmder
	var of [2]*take
	n := 0
	for i := range s {
		t := &s[i]
		if t.done || n == len(cmds) {
			continue
		}
		// What ulule's Store.Get sends: spend 1, the window in ms.
		cmds[n] = redis.NewCmd(cctx, "evalsha", *sha, 1, t.key, 1, t.b.rate.Period.Milliseconds())
		of[n] = t
		n++
	}
	if err := l.piped.b.Do(cctx, cmds[:n]...); err != nil {
		// The commands belong to the batcher now: not read.
		return err
	}
	var first error
	answered := false
	for j, cmd := range cmds[:n] {
		t := of[j]
		lc, err := incrContext(cmd.(*redis.Cmd), t.b.rate)
		if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			// Redis lost its scripts (restart, SCRIPT FLUSH): the store
			// loads them again and takes the budget.
			lc, err = store.Get(cctx, t.storeKey(), t.b.rate)
		}
		if err != nil {
			first = cmpErr(first, err)
			continue
		}
		l.settle(t, lc, now)
		answered = true
	}
	if answered {
		l.markUp()
	}
	return first
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// incrContext reads the budget script's reply {count, ttl in ms} the way
// ulule's Redis store does.
func incrContext(cmd *redis.Cmd, rate limiter.Rate) (limiter.Context, error) {
	v, err := cmd.Result()
	if err != nil {
		return limiter.Context{}, err
	}
	f, ok := v.([]any)
	if !ok || len(f) != 2 {
		return limiter.Context{}, errors.New("ratelimit: budget script: two elements expected in its reply")
	}
	count, ok1 := f[0].(int64)
	ttl, ok2 := f[1].(int64)
	if !ok1 || !ok2 {
		return limiter.Context{}, errors.New("ratelimit: budget script: count and ttl must be integers")
	}
	now := time.Now()
	expiration := now.Add(rate.Period)
	if ttl > 0 {
		expiration = now.Add(time.Duration(ttl) * time.Millisecond)
	}
	return common.GetContextFromState(now, rate, expiration, count), nil
}

// scriptRecorder is the client the ulule Redis store is built on: the
// shared-pipeline client, recording the SHA of the store's budget script
// (the one that spends with INCRBY) when the store loads it — at start and
// again after Redis lost its scripts.
type scriptRecorder struct {
	pipelinedClient
	incrSHA *atomic.Pointer[string]
}

func (c scriptRecorder) ScriptLoad(ctx context.Context, script string) *redis.StringCmd {
	cmd := c.pipelinedClient.ScriptLoad(ctx, script)
	if sha, err := cmd.Result(); err == nil && strings.Contains(script, `"incrby"`) {
		c.incrSHA.Store(&sha)
	}
	return cmd
}
