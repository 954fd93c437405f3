// Package ratelimit is the gateway's distributed rate limiter: fixed-window
// budgets per authenticated user and per client IP, with separate classes
// for writes and reads, kept in Redis by github.com/ulule/limiter/v3 so every
// gateway replica shares them. Rejections are Connect ResourceExhausted
// errors in the caller's protocol (HTTP 429 for Connect) with RateLimit-* and
// Retry-After headers. While Redis is unreachable the limiter fails open to
// an in-process limiter (default) or closed (Unavailable), as configured.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/redis/go-redis/v9"
	"github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/store/memory"
	redisstore "github.com/ulule/limiter/v3/drivers/store/redis"
)

// Class separates budgets: writes (likes, follows) are scarcer than reads.
type Class int

const (
	// Read is a side-effect-free call.
	Read Class = iota + 1
	// Write changes state.
	Write
)

// Response headers (IETF RateLimit header fields draft, plus Retry-After).
const (
	HeaderLimit      = "RateLimit-Limit"
	HeaderRemaining  = "RateLimit-Remaining"
	HeaderReset      = "RateLimit-Reset"
	HeaderRetryAfter = "Retry-After"
)

// ErrRedisUnavailable is returned (fail-closed mode) while Redis cannot be
// reached.
var ErrRedisUnavailable = errors.New("rate limiter unavailable")

// Stats are the limiter's counters, for metrics.
type Stats struct {
	// Allowed and Rejected count decisions (the middleware and AllowUser
	// each make one).
	Allowed, Rejected uint64
	// RedisErrors counts failed Redis checks.
	RedisErrors uint64
	// LocalDecisions counts checks answered by the in-process fallback.
	LocalDecisions uint64
	// FailedClosed counts requests refused because Redis was down.
	FailedClosed uint64
	// CachedRejections counts checks rejected from the local cache of
	// exhausted budgets, without asking Redis.
	CachedRejections uint64
	// RedisDown is true while Redis is considered unreachable.
	RedisDown bool
}

// Decision is the outcome of checking one or more budgets: the most
// constraining one.
type Decision struct {
	Allowed bool
	// Limit, Remaining and Reset (seconds from now until the window resets)
	// of the budget closest to exhaustion.
	Limit, Remaining int64
	Reset            int64
	// Budget names the budget ("user:w", "ip:r", …) that decided.
	Budget string
}

type budget struct {
	name string // "user:w"
	rate limiter.Rate
}

func (b *budget) enabled() bool { return b != nil && b.rate.Limit > 0 }

// policy is what can change at run time.
type policy struct {
	user, ip  [3]*budget // indexed by Class
	redisDown Mode
	source    Policy
}

// Policy is the run-time part of Config: the four budgets and the Redis-down
// mode.
type Policy struct {
	WriteUser, ReadUser, WriteIP, ReadIP string
	RedisDown                            Mode
}

// Policy returns cfg's run-time part.
func (c Config) Policy() Policy {
	return Policy{WriteUser: c.WriteUser, ReadUser: c.ReadUser, WriteIP: c.WriteIP, ReadIP: c.ReadIP, RedisDown: c.RedisDown}
}

func newPolicy(p Policy) (*policy, error) {
	if p.RedisDown == "" {
		p.RedisDown = FailOpen
	}
	if p.RedisDown != FailOpen && p.RedisDown != FailClosed {
		return nil, fmt.Errorf("ratelimit: redis-down mode %q: want open or closed", p.RedisDown)
	}
	out := &policy{redisDown: p.RedisDown, source: p}
	for _, b := range []struct {
		dst  **budget
		name string
		rate string
	}{
		{&out.user[Write], "user:w", p.WriteUser},
		{&out.user[Read], "user:r", p.ReadUser},
		{&out.ip[Write], "ip:w", p.WriteIP},
		{&out.ip[Read], "ip:r", p.ReadIP},
	} {
		r, err := parseRate(b.rate)
		if err != nil {
			return nil, fmt.Errorf("ratelimit: %s: %w", b.name, err)
		}
		*b.dst = &budget{name: b.name, rate: r}
	}
	return out, nil
}

// Limiter enforces the configured budgets. It is safe for concurrent use.
type Limiter struct {
	logger *slog.Logger
	cfg    Config
	opts   options
	errw   *connect.ErrorWriter

	// policy holds the budgets and the Redis-down mode; SetPolicy swaps it
	// at run time (configuration centre).
	policy atomic.Pointer[policy]

	rdb    redis.UniversalClient
	piped  pipelinedClient               // rdb with shared pipelines for the budget scripts
	remote atomic.Pointer[limiter.Store] // Redis store once its scripts are loaded
	local  limiter.Store
	// incrSHA is the SHA of the store's budget script, recorded as the
	// store loads it (scriptRecorder): Check runs that script itself, for
	// all budgets of a request in one pipeline job.
	incrSHA atomic.Pointer[string]

	// blocked remembers budgets found exhausted, until their window resets:
	// a client over its limit is rejected without a Redis round trip.
	blocked blockCache

	downUntil atomic.Int64 // unix nanos; 0 while Redis is healthy
	probing   atomic.Bool
	initMu    sync.Mutex

	allowed, rejected, redisErrors, localDecisions, failedClosed, cachedRejections atomic.Uint64
}

// New returns a Limiter. rdb is the shared Redis (see NewRedisClient); nil
// means in-process limiting only (one replica, tests). New never fails
// because Redis is down: it starts degraded and keeps probing.
func New(logger *slog.Logger, rdb redis.UniversalClient, cfg Config, opts ...Option) (*Limiter, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if isNilClient(rdb) {
		rdb = nil
	}
	pol, err := newPolicy(cfg.Policy())
	if err != nil {
		return nil, err
	}
	cfg.RedisDown = pol.redisDown
	if cfg.RedisTimeout <= 0 {
		cfg.RedisTimeout = 100 * time.Millisecond
	}
	l := &Limiter{
		logger: logger,
		cfg:    cfg,
		opts:   o,
		errw:   connect.NewErrorWriter(),
		rdb:    rdb,
		local: memory.NewStoreWithOptions(limiter.StoreOptions{
			Prefix: o.prefix, CleanUpInterval: limiter.DefaultCleanUpInterval,
		}),
	}
	l.policy.Store(pol)
	if rdb != nil {
		l.piped = newPipelinedClient(rdb)
		ctx, cancel := context.WithTimeout(context.Background(), max(cfg.RedisTimeout, time.Second))
		err := l.initRemote(ctx)
		cancel()
		if err != nil {
			l.markDown(err)
		}
	}
	logger.Info("rate limiter ready", "write_user", cfg.WriteUser, "read_user", cfg.ReadUser,
		"write_ip", cfg.WriteIP, "read_ip", cfg.ReadIP, "redis", rdb != nil, "redis_down", string(cfg.RedisDown),
		"trusted_proxies", len(cfg.TrustedProxies))
	return l, nil
}

// SetPolicy replaces the budgets and the Redis-down mode at run time; the
// next check uses them. Counts already spent in the current windows stay
// (a lowered budget applies at once), budgets remembered as exhausted are
// forgotten (a raised one applies at once too).
func (l *Limiter) SetPolicy(p Policy) error {
	pol, err := newPolicy(p)
	if err != nil {
		return err
	}
	old := l.policy.Swap(pol)
	l.blocked.clear()
	if old == nil || old.source != pol.source {
		l.logger.Info("rate limiter policy changed", "write_user", p.WriteUser, "read_user", p.ReadUser,
			"write_ip", p.WriteIP, "read_ip", p.ReadIP, "redis_down", string(pol.redisDown))
	}
	return nil
}

// Policy returns the policy in force.
func (l *Limiter) Policy() Policy { return l.policy.Load().source }

// Close stops the shared pipelines after the budget takes in flight ran. It
// does not close the Redis client. Call it after the server stopped.
func (l *Limiter) Close() {
	if l.piped.b != nil {
		l.piped.b.Close()
	}
}

// initRemote loads the Redis store (its constructor loads Lua scripts).
func (l *Limiter) initRemote(ctx context.Context) error {
	l.initMu.Lock()
	defer l.initMu.Unlock()
	if l.remote.Load() != nil {
		return nil
	}
	// The store preloads its scripts with context.Background(): check
	// reachability first under our own deadline.
	if err := l.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ratelimit: redis ping: %w", err)
	}
	s, err := redisstore.NewStoreWithOptions(scriptRecorder{l.piped, &l.incrSHA}, limiter.StoreOptions{Prefix: l.opts.prefix})
	if err != nil {
		return fmt.Errorf("ratelimit: redis store: %w", err)
	}
	l.remote.Store(&s)
	return nil
}

// Stats returns the limiter's counters.
func (l *Limiter) Stats() Stats {
	return Stats{
		Allowed:          l.allowed.Load(),
		Rejected:         l.rejected.Load(),
		RedisErrors:      l.redisErrors.Load(),
		LocalDecisions:   l.localDecisions.Load(),
		FailedClosed:     l.failedClosed.Load(),
		CachedRejections: l.cachedRejections.Load(),
		RedisDown:        l.downUntil.Load() != 0,
	}
}

// Middleware limits every request by client IP and, when WithSubject gives
// one, by user, in the request's class. Health checks and reflection are
// exempt (WithSkip).
func (l *Limiter) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.opts.skip(r) {
			next.ServeHTTP(w, r)
			return
		}
		class := l.opts.classify(r)
		subject := ""
		if l.opts.subject != nil {
			subject = l.opts.subject(r)
		}
		d, err := l.Check(r.Context(), class, ipKey(ClientIP(r, l.cfg.TrustedProxies)), subject)
		if !l.respond(w, r, d, err) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// AllowUser checks only the user's budget, for a handler that learns the
// user after the middleware ran (it authenticates inside). It sets the
// RateLimit headers; when it returns false it has written the error and the
// handler must return.
func (l *Limiter) AllowUser(w http.ResponseWriter, r *http.Request, class Class, subject string) bool {
	if subject == "" {
		return true
	}
	d, err := l.Check(r.Context(), class, "", subject)
	return l.respond(w, r, d, err)
}

// respond sets headers and writes the rejection; it reports whether the
// request may proceed.
func (l *Limiter) respond(w http.ResponseWriter, r *http.Request, d Decision, err error) bool {
	observe(d, err)
	if err != nil {
		code := connect.CodeUnavailable
		msg := "rate limiter unavailable, try again later"
		if r.Context().Err() != nil {
			code, msg = connect.CodeCanceled, "request canceled"
		}
		_ = l.errw.Write(w, r, connect.NewError(code, errors.New(msg)))
		return false
	}
	if d.Limit == 0 { // nothing limited this request
		l.allowed.Add(1)
		return true
	}
	h := w.Header()
	// With two checks (middleware, then AllowUser) keep the smaller remaining.
	if prev := h.Get(HeaderRemaining); prev != "" {
		if p, perr := strconv.ParseInt(prev, 10, 64); perr == nil && p < d.Remaining && d.Allowed {
			d.Remaining = p
			d.Limit, _ = strconv.ParseInt(h.Get(HeaderLimit), 10, 64)
			d.Reset, _ = strconv.ParseInt(h.Get(HeaderReset), 10, 64)
		}
	}
	h.Set(HeaderLimit, strconv.FormatInt(d.Limit, 10))
	h.Set(HeaderRemaining, strconv.FormatInt(d.Remaining, 10))
	h.Set(HeaderReset, strconv.FormatInt(d.Reset, 10))
	if d.Allowed {
		l.allowed.Add(1)
		return true
	}
	l.rejected.Add(1)
	retry := max(d.Reset, 1)
	h.Set(HeaderRetryAfter, strconv.FormatInt(retry, 10))
	_ = l.errw.Write(w, r, connect.NewError(connect.CodeResourceExhausted,
		fmt.Errorf("rate limit exceeded (%s budget of %d); retry in %ds", d.Budget, d.Limit, retry)))
	return false
}

// Check spends one unit of the IP budget (ipKey non-empty) and of the user
// budget (subject non-empty) of class, and returns the combined decision.
// Both budgets are taken in one job of the shared Redis pipelines (one
// round trip, no goroutine of their own). It returns ErrRedisUnavailable in
// fail-closed mode while Redis is down, and the context's error when ctx
// ends.
func (l *Limiter) Check(ctx context.Context, class Class, ipKey, subject string) (Decision, error) {
	if class != Read {
		class = Write
	}
	pol := l.policy.Load()
	var s [2]take
	n := 0
	if ipKey != "" && pol.ip[class].enabled() {
		s[n] = l.newTake(pol.ip[class], ipKey)
		n++
	}
	if subject != "" && pol.user[class].enabled() {
		s[n] = l.newTake(pol.user[class], subject)
		n++
	}
	if n == 0 {
		return Decision{Allowed: true}, nil
	}
	if err := l.spend(ctx, pol, s[:n]); err != nil {
		return Decision{}, err
	}
	if n == 1 {
		return s[0].d, nil
	}
	return combine(s[0].d, s[1].d), nil
}

// combine returns the more constraining decision.
func combine(a, b Decision) Decision {
	switch {
	case !a.Allowed && !b.Allowed:
		if b.Reset > a.Reset {
			return b
		}
		return a
	case !a.Allowed:
		return a
	case !b.Allowed:
		return b
	case b.Remaining < a.Remaining:
		return b
	}
	return a
}

// spend takes one unit of every budget of s: from the local cache of
// exhausted budgets when it knows the answer, otherwise in Redis when it is
// healthy, and as the Redis-down mode says for what Redis did not answer.
func (l *Limiter) spend(ctx context.Context, pol *policy, s []take) error {
	now := l.opts.now()
	pending := 0
	for i := range s {
		t := &s[i]
		if until, ok := l.blocked.get(t.key, now); ok {
			l.cachedRejections.Add(1)
			t.d = Decision{Allowed: false, Limit: t.b.rate.Limit, Remaining: 0, Reset: max(0, until.Unix()-now.Unix()), Budget: t.b.name}
			t.done = true
			continue
		}
		pending++
	}
	if pending == 0 {
		return nil
	}
	if store := l.remoteStore(); store != nil {
		err := l.spendRemote(ctx, store, s, now)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		l.markDown(err)
	}
	if l.rdb != nil && pol.redisDown == FailClosed {
		l.failedClosed.Add(1)
		redisDown.WithLabelValues("fail_closed").Inc()
		return ErrRedisUnavailable
	}
	for i := range s {
		t := &s[i]
		if t.done {
			continue
		}
		lc, err := l.local.Get(ctx, t.storeKey(), t.b.rate)
		if err != nil {
			return fmt.Errorf("ratelimit: local store: %w", err)
		}
		if l.rdb != nil {
			l.localDecisions.Add(1)
			redisDown.WithLabelValues("fail_open").Inc()
		}
		t.d = l.decision(t.b, lc)
		t.done = true
	}
	return nil
}

func (l *Limiter) decision(b *budget, lc limiter.Context) Decision {
	reset := lc.Reset - l.opts.now().Unix()
	if reset < 0 {
		reset = 0
	}
	return Decision{Allowed: !lc.Reached, Limit: lc.Limit, Remaining: lc.Remaining, Reset: reset, Budget: b.name}
}

// remoteStore returns the Redis store when Redis is to be used for this
// check: healthy, or down but due for a probe (one request at a time
// probes; the rest use the fallback without waiting).
func (l *Limiter) remoteStore() limiter.Store {
	if l.rdb == nil {
		return nil
	}
	until := l.downUntil.Load()
	if until != 0 {
		now := l.opts.now().UnixNano()
		if now < until {
			return nil
		}
		// Due for a probe: let one caller through per probe interval.
		if !l.downUntil.CompareAndSwap(until, now+l.opts.probe.Nanoseconds()) {
			return nil
		}
	}
	p := l.remote.Load()
	if p == nil {
		// Scripts not loaded yet (Redis was down at start): load them in
		// the background; this request uses the fallback.
		if l.probing.CompareAndSwap(false, true) {
			go func() {
				defer l.probing.Store(false)
				ctx, cancel := context.WithTimeout(context.Background(), max(l.cfg.RedisTimeout, time.Second))
				defer cancel()
				if err := l.initRemote(ctx); err != nil {
					l.markDown(err)
					return
				}
				l.markUp()
			}()
		}
		return nil
	}
	return *p
}

func (l *Limiter) markDown(err error) {
	l.redisErrors.Add(1)
	next := l.opts.now().Add(l.opts.probe).UnixNano()
	for {
		cur := l.downUntil.Load()
		if cur != 0 {
			// Already down: push the next probe out.
			if l.downUntil.CompareAndSwap(cur, max(cur, next)) {
				return
			}
			continue
		}
		if l.downUntil.CompareAndSwap(0, next) {
			behaviour := "failing open to the in-process limiter"
			if l.policy.Load().redisDown == FailClosed {
				behaviour = "failing closed: requests get Unavailable"
			}
			l.logger.Error("rate limiter: redis unreachable, "+behaviour, "err", err, "probe_every", l.opts.probe)
			return
		}
	}
}

func (l *Limiter) markUp() {
	if l.downUntil.Load() == 0 {
		return
	}
	if l.downUntil.Swap(0) != 0 {
		l.logger.Info("rate limiter: redis reachable again, shared budgets restored")
	}
}

// isNilClient catches a typed nil (a nil *redis.Client in the interface).
func isNilClient(c redis.UniversalClient) bool {
	switch v := c.(type) {
	case nil:
		return true
	case *redis.Client:
		return v == nil
	case *redis.ClusterClient:
		return v == nil
	case *redis.Ring:
		return v == nil
	}
	return false
}

// RedisOptions are the client settings suited to rate limiting: context
// deadlines honoured, short timeouts, no retries (a slow or dead Redis must
// cost a request at most Config.RedisTimeout). config.Redis.Client opens a
// single or a cluster client with them; a cluster client still follows
// MOVED and ASK, and the budget scripts touch one key each, so a Redis
// Cluster serves them like a single Redis.
func RedisOptions() redis.UniversalOptions {
	return redis.UniversalOptions{
		ContextTimeoutEnabled: true,
		DialTimeout:           500 * time.Millisecond,
		ReadTimeout:           500 * time.Millisecond,
		WriteTimeout:          500 * time.Millisecond,
		MaxRetries:            -1,
		DialerRetries:         1,
		PoolSize:              64,
		MinIdleConns:          4,
	}
}

// NewRedisClient returns a single-Redis client with RedisOptions.
func NewRedisClient(addr, password string, db int) *redis.Client {
	o := RedisOptions()
	o.Addrs, o.Password, o.DB = []string{addr}, password, db
	return redis.NewClient(o.Simple())
}
