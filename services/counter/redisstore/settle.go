package redisstore

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/highgopress/highgopress/services/counter/domain"
	"github.com/highgopress/highgopress/services/counter/outbox"
)

// SettleTarget is a rebuilt item or user waiting to be settled.
type SettleTarget struct {
	// Key is the settle hash (SettleKey or UserSettleKey).
	Key string
	// Item or User is what the state belongs to (one of them is set).
	Item domain.ItemRef
	User string
	// Boundary is the outbox stream id every event before the rebuild is
	// older than and every event after it newer.
	Boundary string
}

// ClaimSettle returns up to max queued targets that are due and pushes
// them back by lease, so that a worker that stops does not keep them.
func (s *Store) ClaimSettle(ctx context.Context, max int, lease time.Duration) ([]SettleTarget, error) {
	vals, err := s.evalStrings(ctx, claimSettleScript, []string{SettleQueue}, max, lease.Milliseconds())
	if err != nil {
		return nil, err
	}
	out := make([]SettleTarget, 0, len(vals)/2)
	for i := 0; i+1 < len(vals); i += 2 {
		item, user, ok := ParseSettleKey(vals[i])
		if !ok {
			s.logger.Warn("settle queue holds a key that is no settle hash; removed", "key", vals[i])
			if err := s.b.Do(ctx, redis.NewIntCmd(ctx, "zrem", SettleQueue, vals[i])); err != nil {
				return nil, classify(err)
			}
			continue
		}
		out = append(out, SettleTarget{Key: vals[i], Item: item, User: user, Boundary: vals[i+1]})
	}
	return out, nil
}

// PostponeSettle makes targets due again after d.
func (s *Store) PostponeSettle(ctx context.Context, targets []SettleTarget, d time.Duration) error {
	if len(targets) == 0 {
		return nil
	}
	args := make([]any, 0, 1+len(targets))
	args = append(args, d.Milliseconds())
	for _, t := range targets {
		args = append(args, t.Key)
	}
	_, err := s.run(ctx, postponeSettleScript, []string{SettleQueue}, args...)
	return err
}

// SettleQueued returns how many rebuilt items and users wait to be settled.
func (s *Store) SettleQueued(ctx context.Context) (int64, error) {
	cmd := redis.NewIntCmd(ctx, "zcard", SettleQueue)
	if err := s.b.Do(ctx, cmd); err != nil {
		return 0, classify(err)
	}
	n, err := cmd.Result()
	return n, classify(err)
}

// OldestOutboxID returns the id of the oldest entry in the outbox, or ""
// when it is empty. The relay deletes entries once Kafka has them, so every
// event older than this id is in Kafka (or was lost with Redis's data).
func (s *Store) OldestOutboxID(ctx context.Context) (string, error) {
	cmd := redis.NewXMessageSliceCmd(ctx, "xrange", outbox.Stream, "-", "+", "count", 1)
	if err := s.b.Do(ctx, cmd); err != nil {
		return "", classify(err)
	}
	msgs, err := cmd.Result()
	if err != nil {
		return "", classify(err)
	}
	if len(msgs) == 0 {
		return "", nil
	}
	return msgs[0].ID, nil
}

// settleChunk bounds the pairs passed to one settle script call.
const settleChunk = 2000

// SettleResult says what settling changed.
type SettleResult struct {
	// Settled is false when the target was settled already or its state
	// was lost and rebuilt again meanwhile (nothing changed).
	Settled bool
	// Likes, Following and Followers are the count changes; Metrics is the
	// number of metric fields corrected.
	Likes, Following, Followers, Metrics int64
}

// SettleItem applies st (read from MySQL after every event older than t's
// boundary reached it) to the item rebuilt at that boundary: users not
// touched since get MySQL's like state, metrics get the increments the
// rebuild missed. Repeating it changes nothing.
func (s *Store) SettleItem(ctx context.Context, t SettleTarget, st domain.ItemSettlement) (SettleResult, error) {
	keys := []string{CountsKey(t.Item), LikersKey(t.Item), SettleKey(t.Item), TouchedKey(t.Item), SettleQueue}
	var res SettleResult
	// The values the rebuild installed; the script applies the corrections
	// only while the settle hash still holds the boundary read here.
	seeded, err := s.settleState(ctx, t.Key)
	if err != nil {
		return res, err
	}
	if seeded["b"] != t.Boundary {
		return res, nil
	}
	metrics := slices.Sorted(maps.Keys(st.Metrics))
	for start := 0; ; start += settleChunk {
		end := min(start+settleChunk, len(st.Likes))
		final := end == len(st.Likes)
		args := []any{t.Boundary, direction01(final), 0}
		if final {
			args[2] = len(metrics)
			for _, m := range metrics {
				var installed int64
				if v, ok := seeded["m:"+m]; ok {
					if installed, err = strconv.ParseInt(v, 10, 64); err != nil {
						return res, fmt.Errorf("%s field m:%s: %w", t.Key, m, err)
					}
				}
				args = append(args, m, st.Metrics[m]-installed)
			}
		}
		for _, p := range st.Likes[start:end] {
			args = append(args, p.User, direction01(p.On))
		}
		v, err := s.run(ctx, settleItemScript, keys, args...)
		if err != nil {
			return res, err
		}
		if len(v) != 3 {
			return res, fmt.Errorf("settle item script returned %d values", len(v))
		}
		if v[0] == 0 {
			return res, nil
		}
		res.Likes += v[1]
		res.Metrics += v[2]
		if v[1] != 0 || v[2] != 0 {
			s.publishChange(ctx, t.Item)
		}
		if final {
			res.Settled = true
			return res, nil
		}
	}
}

// settleState reads a settle hash.
func (s *Store) settleState(ctx context.Context, key string) (map[string]string, error) {
	cmd := redis.NewMapStringStringCmd(ctx, "hgetall", key)
	if err := s.b.Do(ctx, cmd); err != nil {
		return nil, classify(err)
	}
	m, err := cmd.Result()
	return m, classify(err)
}

// SettleUser is SettleItem for a user's follow pairs; the other user of a
// pair is updated too when its state is loaded.
func (s *Store) SettleUser(ctx context.Context, t SettleTarget, st domain.UserSettlement) (SettleResult, error) {
	keys := []string{UserKey(t.User), FollowingKey(t.User), FollowersKey(t.User), UserSettleKey(t.User), UserTouchedKey(t.User), SettleQueue}
	var res SettleResult
	g, r := st.Following, st.Followers
	for {
		ng := min(len(g), settleChunk)
		nr := min(len(r), settleChunk-ng)
		final := ng == len(g) && nr == len(r)
		args := make([]any, 0, 4+2*(ng+nr))
		args = append(args, t.Boundary, direction01(final), t.User, ng)
		for _, p := range g[:ng] {
			args = append(args, p.User, direction01(p.On))
		}
		for _, p := range r[:nr] {
			args = append(args, p.User, direction01(p.On))
		}
		v, err := s.run(ctx, settleUserScript, keys, args...)
		if err != nil {
			return res, err
		}
		if len(v) != 3 {
			return res, fmt.Errorf("settle user script returned %d values", len(v))
		}
		if v[0] == 0 {
			return res, nil
		}
		res.Following += v[1]
		res.Followers += v[2]
		if final {
			res.Settled = true
			return res, nil
		}
		g, r = g[ng:], r[nr:]
	}
}

// evalStrings runs a script returning strings.
func (s *Store) evalStrings(ctx context.Context, sc *redis.Script, keys []string, args ...any) ([]string, error) {
	cmd, err := s.eval(ctx, sc, keys, args)
	if err != nil {
		return nil, err
	}
	vals, err := cmd.StringSlice()
	if err != nil {
		return nil, classify(err)
	}
	return vals, nil
}

// publishChange tells WatchCounts watchers that item's counts changed
// outside the write scripts (which publish themselves). A failure is
// logged: watchers converge at the next change or resubscription.
func (s *Store) publishChange(ctx context.Context, item domain.ItemRef) {
	cmd := redis.NewIntCmd(ctx, "publish", WatchChannel(item), "settled")
	if err := s.client.Process(ctx, cmd); err != nil {
		s.logger.Warn("publishing a settled item's change", "item", item.Namespace+"/"+item.ID, "err", err)
	}
}
