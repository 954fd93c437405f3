// Package sink applies user-action events to MySQL idempotently, one
// transaction per batch, through sqlc-generated queries (package db).
//
// Per batch: the stored state of every (user, item) and (follower, followee)
// pair in the batch is read with one SELECT … FOR UPDATE (locked until
// commit), the transitions are decided in Go, and all writes go to the server
// as one multi-statement query; then the transaction commits.
//
// Rules:
//   - A like or follow row changes only when the event's version is newer
//     than the stored one; the count changes by exactly the state
//     transition (a newer event with the same state only moves the version). Replays, duplicates and reordered events
//     therefore never double-count and never resurrect an undone like.
//   - An INCREMENT or API_CALL is applied once per event id: the id is
//     recorded in processed_events in the same transaction.
//   - Counts change only through INSERT … ON DUPLICATE KEY UPDATE v = v + ?,
//     never by reading and writing back.
//   - The batch's offset marks (pipeline_offsets: every message of a topic
//     partition below the mark is applied) are written in the same
//     transaction as its events and never move back.
package sink

import (
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/go-sql-driver/mysql"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	db "github.com/highgopress/highgopress/platform/durabledb"
	"github.com/highgopress/highgopress/platform/events"
)

// Sink applies batches of events to MySQL.
type Sink struct {
	logger   *slog.Logger
	db       *sql.DB
	attempts int
}

// New returns a Sink writing through conn (opened with the go-sql-driver).
func New(logger *slog.Logger, conn *sql.DB) *Sink {
	return &Sink{logger: logger, db: conn, attempts: 5}
}

// Result counts what a batch changed.
type Result struct {
	// Transitions is the number of like/follow rows whose state changed.
	Transitions int
	// Increments is the number of INCREMENT and API_CALL events applied
	// (not duplicates).
	Increments int
	// Ignored is the number of events that changed nothing (duplicates,
	// stale versions, repeated states).
	Ignored int
}

type likeKey struct{ ns, item, user string }
type followKey struct{ follower, followee string }
type countKey struct{ ns, item, metric string }
type apiKey struct{ procedure, code string }
type userDelta struct{ followers, following int64 }

// Mark records how far a topic partition has been handled: every message
// of it with an offset below Next is applied (or is poison, dead-lettered).
type Mark struct {
	Topic     string
	Partition int
	Next      int64
}

// Apply applies events (already validated) and raises the offset marks
// (pipeline_offsets, never lowered) in one transaction, retrying it on
// deadlocks and lock wait timeouts. On error nothing was applied and no mark
// moved. With no events it writes only the marks.
//
// The caller must only pass a mark when every message below it is applied
// by this call, by an earlier committed one, or is poison.
func (s *Sink) Apply(ctx context.Context, evs []*eventsv1.Event, marks []Mark) (Result, error) {
	if len(evs) == 0 && len(marks) == 0 {
		return Result{}, nil
	}
	marks = sortMarks(marks)
	var (
		res Result
		err error
	)
	for attempt := 1; attempt <= s.attempts; attempt++ {
		res, err = s.apply(ctx, evs, marks)
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return res, err
		}
		s.logger.Info("sink transaction conflict; retrying", "attempt", attempt, "err", err)
	}
	return res, err
}

func (s *Sink) apply(ctx context.Context, evs []*eventsv1.Event, marks []Mark) (res Result, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Result{}, fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	q := db.New(tx)

	// Coalesce: per pair only the newest event matters (the count follows
	// the transition from the stored state to the newest state); per event
	// id only one increment.
	likes := map[likeKey]*eventsv1.Event{}
	follows := map[followKey]*eventsv1.Event{}
	seen := map[string]bool{}
	var incs []*eventsv1.Event
	for _, ev := range evs {
		switch ev.GetKind() {
		case eventsv1.Kind_KIND_LIKE, eventsv1.Kind_KIND_UNLIKE:
			k := likeKey{ev.GetNamespace(), ev.GetItemId(), ev.GetUserId()}
			if cur, ok := likes[k]; !ok || ev.GetVersion() > cur.GetVersion() {
				likes[k] = ev
			}
		case eventsv1.Kind_KIND_FOLLOW, eventsv1.Kind_KIND_UNFOLLOW:
			k := followKey{ev.GetUserId(), ev.GetTargetUserId()}
			if cur, ok := follows[k]; !ok || ev.GetVersion() > cur.GetVersion() {
				follows[k] = ev
			}
		case eventsv1.Kind_KIND_INCREMENT, eventsv1.Kind_KIND_API_CALL:
			if !seen[ev.GetEventId()] {
				seen[ev.GetEventId()] = true
				incs = append(incs, ev)
			}
		default:
			return Result{}, fmt.Errorf("%w: unknown kind %d", events.ErrInvalid, ev.GetKind())
		}
	}
	res.Ignored = len(evs) - len(likes) - len(follows) - len(incs)

	counts := map[countKey]int64{}
	users := map[string]userDelta{}
	apis := map[apiKey]int64{}
	buf := &execBuffer{tx: tx}
	w := db.New(buf)

	// Likes: read the stored state of every pair (locked), decide in Go,
	// write only newer states.
	if len(likes) > 0 {
		keys := make([][]byte, 0, len(likes))
		byKey := make(map[[32]byte]likeKey, len(likes))
		for k := range likes {
			h := LikeKey(k.ns, k.item, k.user)
			byKey[h] = k
			keys = append(keys, h[:])
		}
		rows, err := q.LikesForUpdate(ctx, keys)
		if err != nil {
			return Result{}, fmt.Errorf("read likes: %w", err)
		}
		stored := make(map[likeKey]db.LikesForUpdateRow, len(rows))
		for _, r := range rows {
			stored[byKey[[32]byte(r.LikeKey)]] = r
		}
		for _, k := range sortedKeys(likes, func(a, b likeKey) int {
			return cmp.Or(cmp.Compare(a.ns, b.ns), cmp.Compare(a.item, b.item), cmp.Compare(a.user, b.user))
		}) {
			ev, cur := likes[k], stored[k]
			if ev.GetVersion() <= cur.Version {
				res.Ignored++ // stale or replayed
				continue
			}
			liked := ev.GetKind() == eventsv1.Kind_KIND_LIKE
			h := LikeKey(k.ns, k.item, k.user)
			if err := w.UpsertLike(ctx, db.UpsertLikeParams{
				LikeKey: h[:], Namespace: k.ns, ItemID: k.item, UserID: k.user, Liked: liked, Version: ev.GetVersion(),
			}); err != nil {
				return Result{}, fmt.Errorf("upsert like: %w", err)
			}
			if liked == cur.Liked {
				res.Ignored++ // newer, same state: only the version moves
				continue
			}
			res.Transitions++
			d := int64(1)
			if !liked {
				d = -1
			}
			counts[countKey{k.ns, k.item, events.LikesMetric}] += d
		}
	}

	if len(follows) > 0 {
		keys := make([][]byte, 0, len(follows))
		byKey := make(map[[32]byte]followKey, len(follows))
		for k := range follows {
			h := FollowKey(k.follower, k.followee)
			byKey[h] = k
			keys = append(keys, h[:])
		}
		rows, err := q.FollowsForUpdate(ctx, keys)
		if err != nil {
			return Result{}, fmt.Errorf("read follows: %w", err)
		}
		stored := make(map[followKey]db.FollowsForUpdateRow, len(rows))
		for _, r := range rows {
			stored[byKey[[32]byte(r.FollowKey)]] = r
		}
		for _, k := range sortedKeys(follows, func(a, b followKey) int {
			return cmp.Or(cmp.Compare(a.follower, b.follower), cmp.Compare(a.followee, b.followee))
		}) {
			ev, cur := follows[k], stored[k]
			if ev.GetVersion() <= cur.Version {
				res.Ignored++
				continue
			}
			active := ev.GetKind() == eventsv1.Kind_KIND_FOLLOW
			h := FollowKey(k.follower, k.followee)
			if err := w.UpsertFollow(ctx, db.UpsertFollowParams{
				FollowKey: h[:], Follower: k.follower, Followee: k.followee, Active: active, Version: ev.GetVersion(),
			}); err != nil {
				return Result{}, fmt.Errorf("upsert follow: %w", err)
			}
			if active == cur.Active {
				res.Ignored++
				continue
			}
			res.Transitions++
			d := int64(1)
			if !active {
				d = -1
			}
			ud := users[k.followee]
			ud.followers += d
			users[k.followee] = ud
			ud = users[k.follower]
			ud.following += d
			users[k.follower] = ud
		}
	}

	if len(incs) > 0 {
		ids := make([]string, len(incs))
		for i, ev := range incs {
			ids[i] = ev.GetEventId()
		}
		done, err := q.ProcessedForUpdate(ctx, ids)
		if err != nil {
			return Result{}, fmt.Errorf("read processed events: %w", err)
		}
		applied := make(map[string]bool, len(done))
		for _, id := range done {
			applied[id] = true
		}
		slices.SortFunc(incs, func(a, b *eventsv1.Event) int { return cmp.Compare(a.GetEventId(), b.GetEventId()) })
		for _, ev := range incs {
			if applied[ev.GetEventId()] {
				res.Ignored++
				continue
			}
			if err := w.MarkProcessed(ctx, db.MarkProcessedParams{
				EventID: ev.GetEventId(), Namespace: ev.GetNamespace(), ItemID: ev.GetItemId(),
				Metric: ev.GetMetric(), Delta: ev.GetDelta(), Version: ev.GetVersion(),
			}); err != nil {
				return Result{}, fmt.Errorf("mark processed: %w", err)
			}
			res.Increments++
			if ev.GetKind() == eventsv1.Kind_KIND_API_CALL {
				apis[apiKey{ev.GetProcedure(), ev.GetCode()}] += ev.GetDelta()
			} else {
				counts[countKey{ev.GetNamespace(), ev.GetItemId(), ev.GetMetric()}] += ev.GetDelta()
			}
		}
	}

	// Counts last, in key order, so concurrent batches lock them in the
	// same order.
	for _, k := range sortedKeys(counts, func(a, b countKey) int {
		return cmp.Or(cmp.Compare(a.ns, b.ns), cmp.Compare(a.item, b.item), cmp.Compare(a.metric, b.metric))
	}) {
		if d := counts[k]; d != 0 {
			if err := w.AddItemCount(ctx, db.AddItemCountParams{Namespace: k.ns, ItemID: k.item, Metric: k.metric, Value: d}); err != nil {
				return Result{}, fmt.Errorf("add item count: %w", err)
			}
		}
	}
	for _, u := range sortedKeys(users, cmp.Compare[string]) {
		if d := users[u]; d != (userDelta{}) {
			if err := w.AddUserCounts(ctx, db.AddUserCountsParams{UserID: u, Followers: d.followers, Following: d.following}); err != nil {
				return Result{}, fmt.Errorf("add user counts: %w", err)
			}
		}
	}
	for _, k := range sortedKeys(apis, func(a, b apiKey) int {
		return cmp.Or(cmp.Compare(a.procedure, b.procedure), cmp.Compare(a.code, b.code))
	}) {
		if err := w.AddAPICalls(ctx, db.AddAPICallsParams{ProcedureName: k.procedure, Code: k.code, Calls: apis[k]}); err != nil {
			return Result{}, fmt.Errorf("add api calls: %w", err)
		}
	}
	// Offset marks after the counts, in (topic, partition) order: merged
	// into the same multi-statement write.
	for _, m := range marks {
		if err := w.AdvanceOffset(ctx, db.AdvanceOffsetParams{Topic: m.Topic, PartitionID: int32(m.Partition), NextOffset: m.Next}); err != nil {
			return Result{}, fmt.Errorf("advance offset: %w", err)
		}
	}
	if err := buf.Flush(ctx); err != nil {
		return Result{}, fmt.Errorf("write batch: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return Result{}, fmt.Errorf("commit: %w", err)
	}
	return res, nil
}

// LikeKey is the item_likes primary key of a (namespace, item, user) pair:
// SHA-256 of the length-prefixed parts.
func LikeKey(namespace, item, user string) [32]byte { return pairKey(namespace, item, user) }

// FollowKey is the follows primary key of a (follower, followee) pair.
func FollowKey(follower, followee string) [32]byte { return pairKey(follower, followee) }

func pairKey(parts ...string) [32]byte {
	h := sha256.New()
	for _, p := range parts {
		_, _ = h.Write(binary.AppendUvarint(nil, uint64(len(p))))
		_, _ = h.Write([]byte(p))
	}
	return [32]byte(h.Sum(nil))
}

// sortMarks returns a copy of marks in (topic, partition) order with one
// mark, the highest, per partition.
func sortMarks(marks []Mark) []Mark {
	out := slices.Clone(marks)
	slices.SortFunc(out, func(a, b Mark) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition), cmp.Compare(b.Next, a.Next))
	})
	return slices.CompactFunc(out, func(a, b Mark) bool { return a.Topic == b.Topic && a.Partition == b.Partition })
}

func sortedKeys[K comparable, V any](m map[K]V, compare func(a, b K) int) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compare)
	return keys
}

// MySQL error numbers.
const (
	errLockWaitTimeout = 1205
	errDeadlock        = 1213
	errDuplicate       = 1062 // a concurrent batch recorded the same event id first
)

// retryable reports a conflict that a new transaction resolves.
func retryable(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == errDeadlock || me.Number == errLockWaitTimeout || me.Number == errDuplicate)
}

// Permanent reports an error that retrying the same event can never fix:
// the event is invalid or a value does not fit the schema. Every other
// error (connection lost, server restarting, conflicts) is transient.
func Permanent(err error) bool {
	if errors.Is(err, events.ErrInvalid) || errors.Is(err, events.ErrUndecodable) {
		return true
	}
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return false
	}
	switch me.Number {
	case 1048, // column cannot be null
		1264, // out of range
		1265, // data truncated
		1292, // incorrect value
		1300, // invalid character string
		1366, // incorrect string value
		1367, // illegal value
		1406: // data too long
		return true
	}
	return false
}
