// Package reconcile compares the counter's real-time view in Redis with the
// durable record in MySQL, exports the drift as metrics, and repairs it.
//
// Redis is ahead of MySQL by the events still in flight (outbox, Kafka), so
// a difference is only a drift when the pipeline is quiescent. Repair
// therefore changes nothing unless the quiescence check passed before and
// after the comparison, and then:
//   - rebuilds an item or user whose state is not loaded in Redis
//     (eviction, FLUSHALL, lost instance) the one way the counter rebuilds
//     state: a snapshot of the durable record (package durable) installed
//     by the store's seed script, which writes only while the state is
//     still not loaded (a concurrent rebuild or write wins) and marks it
//     loaded;
//   - corrects a differing count only with compare-and-set against the
//     value it compared, so a write that lands in between is never
//     overwritten.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/highgopress/highgopress/platform/durabledb"
	"github.com/highgopress/highgopress/services/counter/domain"
	"github.com/highgopress/highgopress/services/counter/redisstore"
)

// Record is the durable record as reconciliation reads it
// (*durable.Store).
type Record interface {
	// Counts returns every item and user count.
	Counts(ctx context.Context) ([]durabledb.ItemCount, []durabledb.UserCount, error)
	// LoadItem and LoadUser return the snapshot a rebuild installs.
	LoadItem(ctx context.Context, item domain.ItemRef) (domain.ItemSnapshot, error)
	LoadUser(ctx context.Context, user string) (domain.UserSnapshot, error)
}

// Seeder installs a snapshot as Redis state unless the state is loaded
// already (*redisstore.Store).
type Seeder interface {
	SeedItem(ctx context.Context, item domain.ItemRef, snap domain.ItemSnapshot) (int64, error)
	SeedUser(ctx context.Context, user string, snap domain.UserSnapshot) (int64, error)
}

// Drift is one Redis field that differs from MySQL.
type Drift struct {
	Key   string // Redis hash key
	Field string
	Redis int64 // 0 when missing
	MySQL int64
	// Missing means the state is not loaded in Redis: the hash is absent,
	// or lacks the loaded mark (redisstore.LoadedField).
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
	seeder Seeder
	record Record
	o      options
	m      *metrics
}

// New returns a Reconciler of the counter's Redis (rdb, and seeder for
// rebuilds: the counter's store) against the durable record.
func New(logger *slog.Logger, rdb redis.Cmdable, seeder Seeder, record Record, opts ...Option) *Reconciler {
	o := options{registerer: prometheus.DefaultRegisterer}
	for _, opt := range opts {
		opt(&o)
	}
	return &Reconciler{logger: logger.With("component", "reconcile"), rdb: rdb, seeder: seeder, record: record, o: o, m: newMetrics(o.registerer)}
}

// Check compares every count in MySQL with Redis and exports the drift
// (hgp_reconcile_drift_fields, hgp_reconcile_drift_abs).
func (r *Reconciler) Check(ctx context.Context) (Report, error) {
	rep := Report{Quiescent: r.quiet(ctx) == nil}
	want := map[string]map[string]int64{}
	items := map[string]domain.ItemRef{}
	users := map[string]string{}
	counts, ucs, err := r.record.Counts(ctx)
	if err != nil {
		return rep, fmt.Errorf("reconcile: read counts: %w", err)
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
			loaded := got[redisstore.LoadedField] != ""
			for field, mysqlValue := range want[k] {
				rep.Fields++
				redisValue, _ := strconv.ParseInt(got[field], 10, 64)
				if loaded && redisValue == mysqlValue {
					continue
				}
				if !loaded && mysqlValue == 0 {
					continue
				}
				rep.Drifts = append(rep.Drifts, Drift{Key: k, Field: field, Redis: redisValue, MySQL: mysqlValue,
					Missing: !loaded, item: items[k], user: users[k]})
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

// Repair fixes the drift of rep, only when rep was quiescent: rebuilds
// state that is not loaded and corrects differing counts. Without
// quiescence it changes nothing: events in flight (or rebuilds waiting to
// be settled by the counter) would be counted twice by a correction. It
// returns how many items, users or fields it changed.
func (r *Reconciler) Repair(ctx context.Context, rep Report) (int, error) {
	repaired := 0
	rebuilt := map[string]bool{}
	for _, d := range rep.Drifts {
		switch {
		case !rep.Quiescent:
		case d.Missing && rebuilt[d.Key]:
			continue
		case d.Missing:
			rebuilt[d.Key] = true
			ok, err := r.rebuild(ctx, d)
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

// rebuild installs the durable record's state of d's item or user, as the
// counter's own rebuild does; 1 when it installed it, 0 when the state was
// loaded meanwhile.
func (r *Reconciler) rebuild(ctx context.Context, d Drift) (int, error) {
	var res int64
	if d.user == "" {
		snap, err := r.record.LoadItem(ctx, d.item)
		if err != nil {
			return 0, fmt.Errorf("reconcile: read %s/%s: %w", d.item.Namespace, d.item.ID, err)
		}
		if res, err = r.seeder.SeedItem(ctx, d.item, snap); err != nil {
			return 0, fmt.Errorf("reconcile: rebuild %s/%s: %w", d.item.Namespace, d.item.ID, err)
		}
	} else {
		snap, err := r.record.LoadUser(ctx, d.user)
		if err != nil {
			return 0, fmt.Errorf("reconcile: read user %s: %w", d.user, err)
		}
		if res, err = r.seeder.SeedUser(ctx, d.user, snap); err != nil {
			return 0, fmt.Errorf("reconcile: rebuild user %s: %w", d.user, err)
		}
	}
	if res == redisstore.SeedInstalled {
		return 1, nil
	}
	return 0, nil
}

// Once checks, logs the drift and repairs it when repair is true.
func (r *Reconciler) Once(ctx context.Context, repair bool) (Report, int, error) {
	rep, err := r.Check(ctx)
	if err != nil {
		return rep, 0, err
	}
	if len(rep.Drifts) > 0 {
		r.logger.Warn("Redis and MySQL differ", "fields", len(rep.Drifts), "abs", rep.Abs(), "quiescent", rep.Quiescent)
	}
	if !repair || len(rep.Drifts) == 0 {
		return rep, 0, nil
	}
	n, err := r.Repair(ctx, rep)
	return rep, n, err
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
		if _, _, err := r.Once(ctx, repair); err != nil {
			r.logger.Warn("reconciliation failed", "err", err)
		}
	}
}
