// Package redisstore is the Redis adapter of the counter service: every
// write is one Lua script that changes state and appends the event to the
// outbox stream atomically; reads are pipelined; concurrent callers share
// pipelines through a batching worker pool.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/highgopress/highgopress/platform/redisbatch"
	"github.com/highgopress/highgopress/platform/tracecontext"
	"github.com/highgopress/highgopress/services/counter/domain"
	"github.com/highgopress/highgopress/services/counter/outbox"
)

// Client is what the store needs from a go-redis client (*redis.Client or,
// with WithCluster, *redis.ClusterClient).
type Client interface {
	redis.Scripter
	Pipeline() redis.Pipeliner
	Process(ctx context.Context, cmd redis.Cmder) error
}

// Store keeps counters in Redis.
type Store struct {
	logger *slog.Logger
	client Client
	b      *redisbatch.Batcher
	ttlSec int64
	// maxMetrics is the most metrics besides likes an item may have.
	maxMetrics any
	// outboxMaxLen is the outbox bound passed to the scripts ("0": never
	// trim); both are boxed once here rather than on every call.
	outboxMaxLen any
	// durable is the scripts' load flag ("1": a durable record can
	// rebuild missing state); loadCheck is the same as a bool.
	durable   any
	loadCheck bool
	// settleDelay is how long (ms, as a string) after a rebuild it is
	// settled; "0": rebuilds are not queued for settling.
	settleDelay any
	// absentTTL is the lifetime of absent entries in ms ("0": none).
	absentTTL any
	// keys is the key layout: single Redis or Redis Cluster.
	keys layout
}

// New returns a Store using client, which it does not close.
func New(logger *slog.Logger, client Client, opts ...Option) *Store {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	return &Store{
		logger: logger,
		client: client,
		b:      redisbatch.New(client, o.batching, o.workers, o.batchMax, o.workers*o.batchMax),
		ttlSec: int64(o.idempotencyTTL.Seconds()),

		maxMetrics:   o.maxMetrics,
		outboxMaxLen: strconv.FormatInt(o.outboxMaxLen, 10),
		durable:      direction01(o.durable),
		loadCheck:    o.durable,
		settleDelay:  strconv.FormatInt(o.settleDelay.Milliseconds(), 10),
		absentTTL:    strconv.FormatInt(o.absentTTL.Milliseconds(), 10),
		keys:         layout{cluster: o.cluster},
	}
}

// Cluster reports whether the store uses the Redis Cluster layout.
func (s *Store) Cluster() bool { return s.keys.cluster }

// LoadScripts loads the Lua scripts into Redis, so the first writes need
// not fall back from EVALSHA to EVAL. It doubles as a start-up check.
func (s *Store) LoadScripts(ctx context.Context) error {
	for _, sc := range allScripts {
		if err := sc.Load(ctx, s.client).Err(); err != nil {
			return fmt.Errorf("load Lua script %s: %w", sc.Hash(), classify(err))
		}
	}
	return nil
}

// Close stops accepting commands and waits for queued ones to finish.
func (s *Store) Close() error {
	s.b.Close()
	return nil
}

// Stats returns the number of pipelines run and the commands they carried.
func (s *Store) Stats() (pipelines, commands int64) { return s.b.Stats() }

// SetBatchMax changes how many commands one Redis pipeline takes at most
// (HGP_COUNTER_BATCH_MAX at run time).
func (s *Store) SetBatchMax(n int) { s.b.SetMax(n) }

// evalsha builds an EVALSHA command for sc.
func evalsha(ctx context.Context, sc *redis.Script, keys []string, args []any) *redis.Cmd {
	a := make([]any, 0, 3+len(keys)+len(args))
	a = append(a, "evalsha", sc.Hash(), len(keys))
	for _, k := range keys {
		a = append(a, k)
	}
	a = append(a, args...)
	return redis.NewCmd(ctx, a...)
}

// eval executes a script through the batcher. When Redis lost its script
// cache (restart, SCRIPT FLUSH) the script is sent again with EVAL, which
// also reloads it. The command holds the reply (or the script's error).
func (s *Store) eval(ctx context.Context, sc *redis.Script, keys []string, args []any) (*redis.Cmd, error) {
	cmd := evalsha(ctx, sc, keys, args)
	if err := s.b.Do(ctx, cmd); err != nil {
		return nil, classify(err)
	}
	if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
		cmd = sc.Eval(ctx, s.client, keys, args...)
	}
	return cmd, nil
}

// run executes a script and returns its integer results.
func (s *Store) run(ctx context.Context, sc *redis.Script, keys []string, args ...any) ([]int64, error) {
	cmd, err := s.eval(ctx, sc, keys, args)
	if err != nil {
		return nil, err
	}
	vals, err := cmd.Int64Slice()
	if err != nil {
		return nil, classify(err)
	}
	return vals, nil
}

func direction01(on bool) string {
	if on {
		return "1"
	}
	return "0"
}

// notLoaded is the first result of a script that found state missing.
const notLoaded = -9

func direction(on bool) string {
	if on {
		return "1"
	}
	return "-1"
}

// SetLike likes (like=true) or unlikes item as user.
func (s *Store) SetLike(ctx context.Context, user string, item domain.ItemRef, like bool) (domain.LikeResult, error) {
	v, err := s.run(ctx, likeScript,
		[]string{s.keys.likers(item), s.keys.counts(item), s.keys.outbox(item), s.keys.settle(item), s.keys.touched(item)},
		user, item.Namespace, item.ID, direction(like), s.outboxMaxLen, s.durable, tracecontext.From(ctx), WatchChannel(item))
	if err != nil {
		return domain.LikeResult{}, err
	}
	if len(v) != 2 {
		return domain.LikeResult{}, fmt.Errorf("like script returned %d values", len(v))
	}
	if v[0] == notLoaded {
		return domain.LikeResult{}, &domain.NotLoadedError{Items: []domain.ItemRef{item}}
	}
	return domain.LikeResult{Changed: v[0] == 1, Count: v[1]}, nil
}

// SetFollow makes user follow (follow=true) or unfollow target.
func (s *Store) SetFollow(ctx context.Context, user, target string, follow bool) (domain.FollowResult, error) {
	if s.keys.cluster {
		return domain.FollowResult{}, fmt.Errorf("%w: follows need a single Redis primary for now (HGP_REDIS_CLUSTER)", domain.ErrUnsupported)
	}
	v, err := s.run(ctx, followScript,
		[]string{
			FollowingKey(user), FollowersKey(target), UserKey(user), UserKey(target), outbox.Stream,
			UserSettleKey(user), UserTouchedKey(user), UserSettleKey(target), UserTouchedKey(target),
		},
		user, target, direction(follow), s.outboxMaxLen, s.durable, tracecontext.From(ctx))
	if err != nil {
		return domain.FollowResult{}, err
	}
	if len(v) != 3 {
		return domain.FollowResult{}, fmt.Errorf("follow script returned %d values", len(v))
	}
	if v[0] == notLoaded {
		e := &domain.NotLoadedError{}
		if v[1] == 1 {
			e.Users = append(e.Users, user)
		}
		if v[2] == 1 {
			e.Users = append(e.Users, target)
		}
		return domain.FollowResult{}, e
	}
	return domain.FollowResult{Changed: v[0] == 1, Following: v[1], Followers: v[2]}, nil
}

// Fingerprint identifies an Increment's parameters in its idempotency
// record; the parts cannot contain newlines, so it is unambiguous.
func Fingerprint(in domain.Increment) string {
	return in.Item.Namespace + "\n" + in.Item.ID + "\n" + in.Metric + "\n" + strconv.FormatInt(in.Delta, 10)
}

// Increment applies in once per (user, idempotency key) and returns the
// metric's value after the first application. A metric the item does not
// have yet is refused with domain.ErrTooManyMetrics when the item already
// has the most metrics allowed (WithMaxMetrics).
func (s *Store) Increment(ctx context.Context, user string, in domain.Increment) (int64, error) {
	v, err := s.run(ctx, incrScript,
		[]string{s.keys.idempotency(user, in.IdempotencyKey, in.Item), s.keys.counts(in.Item), s.keys.outbox(in.Item)},
		Fingerprint(in), in.Metric, in.Delta, s.ttlSec, user, in.Item.Namespace, in.Item.ID, in.IdempotencyKey,
		s.maxMetrics, s.outboxMaxLen, s.durable, tracecontext.From(ctx), WatchChannel(in.Item))
	if err != nil {
		return 0, err
	}
	if len(v) != 2 {
		return 0, fmt.Errorf("increment script returned %d values", len(v))
	}
	switch v[0] {
	case notLoaded:
		return 0, &domain.NotLoadedError{Items: []domain.ItemRef{in.Item}}
	case -1:
		return 0, domain.ErrIdempotencyConflict
	case -2:
		return 0, fmt.Errorf("%w: item %s/%s already has %d metrics besides likes, the most allowed; metric %q cannot be added",
			domain.ErrTooManyMetrics, in.Item.Namespace, in.Item.ID, v[1], in.Metric)
	}
	return v[1], nil
}

// Seed outcomes.
const (
	// SeedSkipped: the state was loaded already; nothing changed.
	SeedSkipped = 0
	// SeedInstalled: the snapshot was installed.
	SeedInstalled = 1
	// SeedAbsent: an empty snapshot for a read was installed as an
	// expiring absent entry (see AbsentField).
	SeedAbsent = 3
)

// SeedItem installs snap as item's state unless the item is loaded
// already (then nothing changes: a concurrent seeder or write won). It
// returns SeedSkipped, SeedInstalled or SeedAbsent. State not marked
// loaded (an absent entry, what an eviction left, what a counter without a
// durable record wrote) is replaced.
func (s *Store) SeedItem(ctx context.Context, item domain.ItemRef, snap domain.ItemSnapshot) (int64, error) {
	if snap.ForRead && len(snap.Likers) == 0 && len(snap.Metrics) == 0 {
		if r, ok, err := s.seedAbsent(ctx, s.keys.counts(item), s.keys.likers(item)); ok || err != nil {
			return r, err
		}
	}
	args := make([]any, 0, 2+2*len(snap.Metrics)+len(snap.Likers))
	n := 0
	args = append(args, s.settleDelay, 0)
	for m, v := range snap.Metrics {
		if m == domain.LikesMetric || m == LoadedField {
			continue
		}
		args = append(args, m, v)
		n++
	}
	args[1] = n
	for _, u := range snap.Likers {
		args = append(args, u)
	}
	return s.seed(ctx, seedItemScript,
		[]string{s.keys.counts(item), s.keys.likers(item), outbox.Stream, s.keys.settle(item), s.keys.touched(item), SettleQueue}, args)
}

// SeedUser installs snap as user's follow state unless the user is loaded
// already; like SeedItem.
func (s *Store) SeedUser(ctx context.Context, user string, snap domain.UserSnapshot) (int64, error) {
	if snap.ForRead && len(snap.Following) == 0 && len(snap.Followers) == 0 {
		if r, ok, err := s.seedAbsent(ctx, UserKey(user), FollowingKey(user), FollowersKey(user)); ok || err != nil {
			return r, err
		}
	}
	args := make([]any, 0, 2+len(snap.Following)+len(snap.Followers))
	args = append(args, s.settleDelay, len(snap.Following))
	for _, u := range snap.Following {
		args = append(args, u)
	}
	for _, u := range snap.Followers {
		args = append(args, u)
	}
	return s.seed(ctx, seedUserScript, []string{
		UserKey(user), FollowingKey(user), FollowersKey(user),
		outbox.Stream, UserSettleKey(user), UserTouchedKey(user), SettleQueue,
	}, args)
}

// seedAbsent installs an absent entry at keys[0] unless absent entries are
// off (ok false), or state is there already: loaded or absent (ok, with
// SeedSkipped), or anything else (ok false: the regular seed replaces it).
func (s *Store) seedAbsent(ctx context.Context, keys ...string) (r int64, ok bool, err error) {
	if s.absentTTL == "0" {
		return 0, false, nil
	}
	r, err = s.seed(ctx, seedAbsentScript, keys, []any{s.absentTTL})
	if err != nil {
		return 0, false, err
	}
	return r, r >= 0, nil
}

// ItemLoaded reports whether item's state is marked complete.
func (s *Store) ItemLoaded(ctx context.Context, item domain.ItemRef) (bool, error) {
	return s.marked(ctx, s.keys.counts(item))
}

// UserLoaded reports whether user's follow state is marked complete.
func (s *Store) UserLoaded(ctx context.Context, user string) (bool, error) {
	return s.marked(ctx, UserKey(user))
}

func (s *Store) marked(ctx context.Context, key string) (bool, error) {
	cmd := redis.NewBoolCmd(ctx, "hexists", key, LoadedField)
	if err := s.b.Do(ctx, cmd); err != nil {
		return false, classify(err)
	}
	ok, err := cmd.Result()
	return ok, classify(err)
}

func (s *Store) seed(ctx context.Context, sc *redis.Script, keys []string, args []any) (int64, error) {
	cmd, err := s.eval(ctx, sc, keys, args)
	if err != nil {
		return 0, err
	}
	v, err := cmd.Int64()
	if err != nil {
		return 0, classify(err)
	}
	return v, nil
}

// MaxMemoryPolicy returns Redis's maxmemory-policy (CONFIG GET). An error
// matching domain.ErrUnavailable means Redis could not be asked; any other
// error is Redis refusing CONFIG (disabled or renamed on managed services,
// or not implemented, as in miniredis).
func (s *Store) MaxMemoryPolicy(ctx context.Context) (string, error) {
	cmd := redis.NewMapStringStringCmd(ctx, "config", "get", "maxmemory-policy")
	if err := s.client.Process(ctx, cmd); err != nil {
		return "", classify(err)
	}
	policy, ok := cmd.Val()["maxmemory-policy"]
	if !ok {
		return "", errors.New("CONFIG GET maxmemory-policy returned no value")
	}
	return policy, nil
}

// ReadItems returns the counters of fetch and, for a viewer, whether the
// viewer likes each item of check; all in one round trip.
func (s *Store) ReadItems(ctx context.Context, fetch []domain.ItemRef, viewer string, check []domain.ItemRef) ([]domain.ItemCounts, []bool, error) {
	if viewer == "" {
		check = nil
	}
	cmds := make([]redis.Cmder, 0, len(fetch)+len(check))
	hashes := make([]*redis.MapStringStringCmd, len(fetch))
	for i, it := range fetch {
		hashes[i] = redis.NewMapStringStringCmd(ctx, "hgetall", s.keys.counts(it))
		cmds = append(cmds, hashes[i])
	}
	members := make([]*redis.BoolCmd, len(check))
	for i, it := range check {
		members[i] = redis.NewBoolCmd(ctx, "sismember", s.keys.likers(it), viewer)
		cmds = append(cmds, members[i])
	}
	// Whether a checked item's likers set is complete (or the item
	// absent).
	var marks []*redis.SliceCmd
	if s.loadCheck {
		marks = make([]*redis.SliceCmd, len(check))
		for i, it := range check {
			marks[i] = redis.NewSliceCmd(ctx, "hmget", s.keys.counts(it), LoadedField, AbsentField)
			cmds = append(cmds, marks[i])
		}
	}
	if len(cmds) == 0 {
		return nil, nil, nil
	}
	if err := s.b.Do(ctx, cmds...); err != nil {
		return nil, nil, classify(err)
	}
	var missing []domain.ItemRef
	counts := make([]domain.ItemCounts, len(fetch))
	for i, h := range hashes {
		m, err := h.Result()
		if err != nil {
			return nil, nil, classify(err)
		}
		if s.loadCheck && !hasMark(m) {
			missing = append(missing, fetch[i])
		}
		if counts[i], err = parseCounts(m); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", s.keys.counts(fetch[i]), err)
		}
	}
	for i, mark := range marks {
		vals, err := mark.Result()
		if err != nil {
			return nil, nil, classify(err)
		}
		if vals[0] == nil && vals[1] == nil && !slices.Contains(missing, check[i]) {
			missing = append(missing, check[i])
		}
	}
	if len(missing) > 0 {
		return nil, nil, &domain.NotLoadedError{Items: missing}
	}
	liked, err := bools(members)
	if err != nil {
		return nil, nil, err
	}
	return counts, liked, nil
}

// hasMark reports whether a counts hash is loaded or absent.
func hasMark(m map[string]string) bool {
	_, loaded := m[LoadedField]
	_, absent := m[AbsentField]
	return loaded || absent
}

func parseCounts(m map[string]string) (domain.ItemCounts, error) {
	var c domain.ItemCounts
	for field, raw := range m {
		if field == LoadedField || field == AbsentField {
			continue
		}
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return c, fmt.Errorf("field %s: %w", field, err)
		}
		if field == domain.LikesMetric {
			c.Likes = n
			continue
		}
		if c.Metrics == nil {
			c.Metrics = make(map[string]int64, len(m))
		}
		c.Metrics[field] = n
	}
	return c, nil
}

func bools(cmds []*redis.BoolCmd) ([]bool, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	out := make([]bool, len(cmds))
	for i, c := range cmds {
		v, err := c.Result()
		if err != nil {
			return nil, classify(err)
		}
		out[i] = v
	}
	return out, nil
}

// ReadUsers returns the follow counters of fetch and, for a viewer, whether
// the viewer follows each user of check; all in one round trip.
func (s *Store) ReadUsers(ctx context.Context, fetch []string, viewer string, check []string) ([]domain.UserCounts, []bool, error) {
	if viewer == "" {
		check = nil
	}
	cmds := make([]redis.Cmder, 0, len(fetch)+len(check))
	hashes := make([]*redis.SliceCmd, len(fetch))
	for i, u := range fetch {
		hashes[i] = redis.NewSliceCmd(ctx, "hmget", UserKey(u), "followers", "following", LoadedField, AbsentField)
		cmds = append(cmds, hashes[i])
	}
	members := make([]*redis.BoolCmd, len(check))
	for i, u := range check {
		members[i] = redis.NewBoolCmd(ctx, "sismember", FollowingKey(viewer), u)
		cmds = append(cmds, members[i])
	}
	// Whether the viewer's following set is complete (or the viewer
	// absent).
	var mark *redis.SliceCmd
	if s.loadCheck && len(check) > 0 {
		mark = redis.NewSliceCmd(ctx, "hmget", UserKey(viewer), LoadedField, AbsentField)
		cmds = append(cmds, mark)
	}
	if len(cmds) == 0 {
		return nil, nil, nil
	}
	if err := s.b.Do(ctx, cmds...); err != nil {
		return nil, nil, classify(err)
	}
	var missing []string
	counts := make([]domain.UserCounts, len(fetch))
	for i, h := range hashes {
		vals, err := h.Result()
		if err != nil {
			return nil, nil, classify(err)
		}
		if len(vals) != 4 {
			return nil, nil, fmt.Errorf("%s: HMGET returned %d values", UserKey(fetch[i]), len(vals))
		}
		if s.loadCheck && vals[2] == nil && vals[3] == nil {
			missing = append(missing, fetch[i])
		}
		if counts[i].Followers, err = optInt(vals[0]); err != nil {
			return nil, nil, fmt.Errorf("%s followers: %w", UserKey(fetch[i]), err)
		}
		if counts[i].Following, err = optInt(vals[1]); err != nil {
			return nil, nil, fmt.Errorf("%s following: %w", UserKey(fetch[i]), err)
		}
	}
	if mark != nil {
		vals, err := mark.Result()
		if err != nil {
			return nil, nil, classify(err)
		}
		if vals[0] == nil && vals[1] == nil && !slices.Contains(missing, viewer) {
			missing = append(missing, viewer)
		}
	}
	if len(missing) > 0 {
		return nil, nil, &domain.NotLoadedError{Users: missing}
	}
	follows, err := bools(members)
	if err != nil {
		return nil, nil, err
	}
	return counts, follows, nil
}

func optInt(v any) (int64, error) {
	switch v := v.(type) {
	case nil:
		return 0, nil
	case string:
		return strconv.ParseInt(v, 10, 64)
	case int64:
		return v, nil
	}
	return 0, fmt.Errorf("unexpected %T", v)
}

// unavailableCodes are the error codes (first word) of Redis replies that
// mean "not now" rather than "never": out of memory under noeviction, still
// loading the dataset, a replica or a primary without its link, busy
// running a script, unable to persist, a cluster reconfiguring. A client
// may retry them later; the write was not applied.
var unavailableCodes = []string{
	"OOM", "LOADING", "READONLY", "MASTERDOWN", "BUSY", "MISCONF",
	"CLUSTERDOWN", "TRYAGAIN", "NOREPLICAS",
}

// unavailableMessages are "ERR ..." replies that mean the same.
var unavailableMessages = []string{"max number of clients reached"}

// scriptErrMarker precedes the original error in script errors of Redis
// before 7 ("ERR Error running script (call to f_<sha>):
// @user_script:3: -OOM command not allowed ..."); Redis 7 keeps the
// original code at the start ("OOM command not allowed ... script: <sha>,
// on @user_script:3.").
const scriptErrMarker = ": -"

// unavailableReply reports whether a Redis error reply means "not now".
func unavailableReply(msg string) bool {
	if strings.HasPrefix(msg, "ERR Error running script") {
		if i := strings.LastIndex(msg, scriptErrMarker); i >= 0 {
			msg = msg[i+len(scriptErrMarker):]
		}
	}
	code, rest, _ := strings.Cut(msg, " ")
	if code == "ERR" {
		for _, m := range unavailableMessages {
			if strings.HasPrefix(rest, m) {
				return true
			}
		}
		return false
	}
	// Whole codes only: BUSY is "busy running a script", but BUSYKEY and
	// BUSYGROUP are plain mistakes.
	return slices.Contains(unavailableCodes, code)
}

// classify wraps errors that mean Redis cannot be reached or cannot serve
// right now with domain.ErrUnavailable. Context errors stay as they are.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		if unavailableReply(rerr.Error()) {
			return fmt.Errorf("%w: %w", domain.ErrUnavailable, err)
		}
		return fmt.Errorf("redis: %w", err)
	}
	// Anything else stopped the exchange itself: refused or broken
	// connections, timeouts, an exhausted pool, a closed client or store.
	return fmt.Errorf("%w: %w", domain.ErrUnavailable, err)
}
