// Package reconcile compares the real-time view in Redis with the durable
// record in MySQL, exports the drift as metrics, and repairs it.
//
// Redis is ahead of MySQL by the events still in flight (outbox, Kafka), so
// a difference is only a drift when the pipeline is quiescent. Repair
// therefore:
//   - rebuilds an item's or user's keys that are missing from Redis
//     entirely (eviction, FLUSHALL, lost instance) from MySQL, creating
//     them only if they are still missing (a concurrent write wins);
//   - corrects a differing count only when the quiescence check passes
//     before and after the comparison, and only with compare-and-set
//     against the value it compared, so a write that lands in between is
//     never overwritten.
package reconcile

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/highgopress/highgopress/platform/durabledb"
	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/services/counter/domain"
	"github.com/highgopress/highgopress/services/counter/redisstore"
)

// Drift is one Redis field that differs from MySQL.
type Drift struct {
	Key   string // Redis hash key
	Field string
	Redis int64 // 0 when missing
	MySQL int64
	// Missing means the whole hash is absent from Redis.
	Missing bool
	// item or user the key belongs to (for rebuilds)
	item domain.ItemRef
	user string
}

// Report is the result of one comparison.
type Report struct {
	Fields int     // fields compared
	Drifts []Drift // differing fields
	// Quiescent says whether nothing was in flight around the comparison.
	Quiescent bool
}

// Abs returns the summed absolute difference.
func (r Report) Abs() int64 {
	var n int64
	for _, d := range r.Drifts {
		n += max(d.Redis-d.MySQL, d.MySQL-d.Redis)
	}
	return n
}

// Reconciler compares and repairs.
type Reconciler struct {
	logger *slog.Logger
	rdb    redis.Cmdable
	q      *durabledb.Queries
	o      options
	m      *metrics
}

// New returns a Reconciler over the counter's Redis and the consumer's MySQL.
func New(logger *slog.Logger, rdb redis.Cmdable, conn *sql.DB, opts ...Option) *Reconciler {
	o := options{registerer: prometheus.DefaultRegisterer}
	for _, opt := range opts {
		opt(&o)
	}
	return &Reconciler{logger: logger.With("component", "reconcile"), rdb: rdb, q: durabledb.New(conn), o: o, m: newMetrics(o.registerer)}
}

// Check compares every count in MySQL with Redis and exports the drift
// (hgp_reconcile_drift_fields, hgp_reconcile_drift_abs).
func (r *Reconciler) Check(ctx context.Context) (Report, error) {
	rep := Report{Quiescent: r.quiet(ctx) == nil}
	want := map[string]map[string]int64{}
	items := map[string]domain.ItemRef{}
	users := map[string]string{}
	counts, err := r.q.ListAllItemCounts(ctx)
	if err != nil {
		return rep, fmt.Errorf("reconcile: read item counts: %w", err)
	}
	for _, c := range counts {
		it := domain.ItemRef{Namespace: c.Namespace, ID: c.ItemID}
		k := redisstore.CountsKey(it)
		if want[k] == nil {
			want[k] = map[string]int64{}
			items[k] = it
		}
		want[k][c.Metric] = c.Value
	}
	ucs, err := r.q.ListAllUserCounts(ctx)
	if err != nil {
		return rep, fmt.Errorf("reconcile: read user counts: %w", err)
	}
	for _, u := range ucs {
		k := redisstore.UserKey(u.UserID)
		want[k] = map[string]int64{"followers": u.Followers, "following": u.Following}
		users[k] = u.UserID
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	const page = 500
	for len(keys) > 0 {
		chunk := keys[:min(page, len(keys))]
		keys = keys[len(chunk):]
		pipe := r.rdb.Pipeline()
		cmds := make([]*redis.MapStringStringCmd, len(chunk))
		for i, k := range chunk {
			cmds[i] = pipe.HGetAll(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return rep, fmt.Errorf("reconcile: read Redis: %w", err)
		}
		for i, k := range chunk {
			got := cmds[i].Val()
			for field, mysqlValue := range want[k] {
				rep.Fields++
				redisValue, _ := strconv.ParseInt(got[field], 10, 64)
				if redisValue == mysqlValue && (len(got) > 0 || mysqlValue == 0) {
					continue
				}
				if len(got) == 0 && mysqlValue == 0 {
					continue
				}
				rep.Drifts = append(rep.Drifts, Drift{Key: k, Field: field, Redis: redisValue, MySQL: mysqlValue,
					Missing: len(got) == 0, item: items[k], user: users[k]})
			}
		}
	}
	if rep.Quiescent {
		rep.Quiescent = r.quiet(ctx) == nil
	}
	r.m.fields.Set(float64(len(rep.Drifts)))
	r.m.abs.Set(float64(rep.Abs()))
	r.m.runs.Inc()
	return rep, nil
}

func (r *Reconciler) quiet(ctx context.Context) error {
	if r.o.quiescent == nil {
		return errors.New("no quiescence check configured")
	}
	return r.o.quiescent(ctx)
}

// casField sets a hash field to ARGV[2] only if it still holds ARGV[1].
var casField = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[3]) or '0'
if cur ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[2])
return 1
`)

// rebuildItem recreates a missing item: counts hash and likers set, only if
// neither exists.
var rebuildItem = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local n = tonumber(ARGV[1])
for i = 0, n - 1 do
  redis.call('HSET', KEYS[1], ARGV[2 + 2*i], ARGV[3 + 2*i])
end
for i = 2 + 2*n, #ARGV do
  redis.call('SADD', KEYS[2], ARGV[i])
end
return 1
`)

// rebuildUser recreates a missing user hash and follow sets, only if none
// exists.
var rebuildUser = redis.NewScript(`
for i = 1, 3 do
  if redis.call('EXISTS', KEYS[i]) == 1 then return 0 end
end
redis.call('HSET', KEYS[1], 'followers', ARGV[1], 'following', ARGV[2])
local nf = tonumber(ARGV[3])
for i = 4, 3 + nf do redis.call('SADD', KEYS[2], ARGV[i]) end
for i = 4 + nf, #ARGV do redis.call('SADD', KEYS[3], ARGV[i]) end
return 1
`)

// Repair fixes the drift of rep, only when rep was quiescent: rebuilds
// missing keys and corrects differing counts. Without quiescence it changes
// nothing: events in flight (or rebuilds waiting to be settled by the
// counter) would be missed by a rebuild, or counted twice by a correction.
// It returns how many keys or fields it changed.
func (r *Reconciler) Repair(ctx context.Context, rep Report) (int, error) {
	repaired := 0
	rebuilt := map[string]bool{}
	for _, d := range rep.Drifts {
		switch {
		case !rep.Quiescent:
		case d.Missing && rebuilt[d.Key]:
			continue
		case d.Missing && d.user == "":
			rebuilt[d.Key] = true
			ok, err := r.rebuildItem(ctx, d.item)
			if err != nil {
				return repaired, err
			}
			repaired += ok
		case d.Missing:
			rebuilt[d.Key] = true
			ok, err := r.rebuildUser(ctx, d.user)
			if err != nil {
				return repaired, err
			}
			repaired += ok
		default:
			n, err := casField.Run(ctx, r.rdb, []string{d.Key}, strconv.FormatInt(d.Redis, 10), strconv.FormatInt(d.MySQL, 10), d.Field).Int()
			if err != nil {
				return repaired, fmt.Errorf("reconcile: repair %s %s: %w", d.Key, d.Field, err)
			}
			repaired += n
		}
	}
	r.m.repaired.Add(float64(repaired))
	if repaired > 0 {
		r.logger.Info("repaired Redis from MySQL", "changed", repaired, "drifts", len(rep.Drifts), "quiescent", rep.Quiescent)
	}
	return repaired, nil
}

func (r *Reconciler) rebuildItem(ctx context.Context, it domain.ItemRef) (int, error) {
	counts, err := r.q.ListItemCounts(ctx, durabledb.ListItemCountsParams{Namespace: it.Namespace, ItemID: it.ID})
	if err != nil {
		return 0, fmt.Errorf("reconcile: read counts of %s/%s: %w", it.Namespace, it.ID, err)
	}
	likers, err := r.q.ListLikers(ctx, durabledb.ListLikersParams{Namespace: it.Namespace, ItemID: it.ID})
	if err != nil {
		return 0, fmt.Errorf("reconcile: read likers of %s/%s: %w", it.Namespace, it.ID, err)
	}
	args := []any{len(counts)}
	for _, c := range counts {
		args = append(args, c.Metric, c.Value)
	}
	for _, u := range likers {
		args = append(args, u)
	}
	if len(counts) == 0 || countOf(counts, events.LikesMetric) != int64(len(likers)) {
		r.logger.Warn("likes count and likers differ in MySQL", "namespace", it.Namespace, "item", it.ID)
	}
	n, err := rebuildItem.Run(ctx, r.rdb, []string{redisstore.CountsKey(it), redisstore.LikersKey(it)}, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("reconcile: rebuild %s/%s: %w", it.Namespace, it.ID, err)
	}
	return n, nil
}

func countOf(rows []durabledb.ListItemCountsRow, metric string) int64 {
	for _, r := range rows {
		if r.Metric == metric {
			return r.Value
		}
	}
	return 0
}

func (r *Reconciler) rebuildUser(ctx context.Context, user string) (int, error) {
	uc, err := r.q.GetUserCounts(ctx, user)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("reconcile: read counts of user %s: %w", user, err)
	}
	following, err := r.q.ListFollowing(ctx, user)
	if err != nil {
		return 0, fmt.Errorf("reconcile: read following of %s: %w", user, err)
	}
	followers, err := r.q.ListFollowers(ctx, user)
	if err != nil {
		return 0, fmt.Errorf("reconcile: read followers of %s: %w", user, err)
	}
	args := []any{uc.Followers, uc.Following, len(following)}
	for _, u := range following {
		args = append(args, u)
	}
	for _, u := range followers {
		args = append(args, u)
	}
	n, err := rebuildUser.Run(ctx, r.rdb, []string{redisstore.UserKey(user), redisstore.FollowingKey(user), redisstore.FollowersKey(user)}, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("reconcile: rebuild user %s: %w", user, err)
	}
	return n, nil
}

// RunEvery checks (and repairs when repair is true) every interval until
// ctx is cancelled.
func (r *Reconciler) RunEvery(ctx context.Context, interval time.Duration, repair bool) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		rep, err := r.Check(ctx)
		if err != nil {
			r.logger.Warn("reconciliation failed", "err", err)
			continue
		}
		if len(rep.Drifts) > 0 {
			r.logger.Warn("Redis and MySQL differ", "fields", len(rep.Drifts), "abs", rep.Abs(), "quiescent", rep.Quiescent)
		}
		if repair && len(rep.Drifts) > 0 {
			if _, err := r.Repair(ctx, rep); err != nil {
				r.logger.Warn("repair failed", "err", err)
			}
		}
	}
}
