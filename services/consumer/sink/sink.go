// Package sink applies user-action events to MySQL idempotently, one
// transaction per batch, through the sqlc-generated queries of
// platform/durabledb.
//
// Per batch: the stored state of every (user, item) and (follower, followee)
// pair in the batch is read with one SELECT … FOR UPDATE (locked until
// commit), the transitions are decided in Go, and all writes go to the server
// as one multi-statement query; then the transaction commits.
//
// Rules:
//   - A like or follow row changes only when the event's version is newer
//     than the stored one; the count changes by exactly the state
//     transition (a newer event with the same state only moves the
//     version). Replays, duplicates and reordered events therefore never
//     double-count and never resurrect an undone like. The rule is written
//     once, for both kinds of pair, in pairPhase.apply.
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

// apply runs one attempt of a batch in its own transaction, in phases:
// classify (coalesce the batch), the likes and the follows (pairPhase: read
// the stored versions, keep the newer states, count the transitions), the
// increments and API calls (once per event id), the summed counts, the
// offset marks. The reads lock their rows through the transaction; every
// write is buffered and sent as one multi-statement query before the
// commit.
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
	b, err := classify(evs)
	if err != nil {
		return Result{}, err
	}
	res.Ignored = b.superseded
	buf := &execBuffer{tx: tx}
	ph := phase{read: db.New(tx), write: db.New(buf), res: &res, deltas: newDeltas()}

	if err := likePairs.apply(ctx, ph, b.likes); err != nil {
		return Result{}, err
	}
	if err := followPairs.apply(ctx, ph, b.follows); err != nil {
		return Result{}, err
	}
	if err := applyIncrements(ctx, ph, b.incs); err != nil {
		return Result{}, err
	}
	if err := ph.deltas.write(ctx, ph.write); err != nil {
		return Result{}, err
	}
	if err := writeMarks(ctx, ph.write, marks); err != nil {
		return Result{}, err
	}
	if err := buf.Flush(ctx); err != nil {
		return Result{}, fmt.Errorf("write batch: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return Result{}, fmt.Errorf("commit: %w", err)
	}
	return res, nil
}

// phase is what every phase of one attempt shares: the transaction's
// reads (locking, unbuffered), its buffered writes, the result and the
// count deltas summed so far.
type phase struct {
	read   *db.Queries
	write  *db.Queries
	res    *Result
	deltas *deltas
}

// batch is a batch coalesced: per pair only the newest event matters (the
// count follows the transition from the stored state to the newest
// state); per event id only one increment.
type batch struct {
	likes   map[likeKey]*eventsv1.Event
	follows map[followKey]*eventsv1.Event
	incs    []*eventsv1.Event
	// superseded counts the events dropped by coalescing.
	superseded int
}

// classify coalesces evs by kind; an unknown kind is invalid.
func classify(evs []*eventsv1.Event) (batch, error) {
	b := batch{likes: map[likeKey]*eventsv1.Event{}, follows: map[followKey]*eventsv1.Event{}}
	seen := map[string]bool{}
	for _, ev := range evs {
		switch ev.GetKind() {
		case eventsv1.Kind_KIND_LIKE, eventsv1.Kind_KIND_UNLIKE:
			keepNewest(b.likes, likePairs.key(ev), ev)
		case eventsv1.Kind_KIND_FOLLOW, eventsv1.Kind_KIND_UNFOLLOW:
			keepNewest(b.follows, followPairs.key(ev), ev)
		case eventsv1.Kind_KIND_INCREMENT, eventsv1.Kind_KIND_API_CALL:
			if !seen[ev.GetEventId()] {
				seen[ev.GetEventId()] = true
				b.incs = append(b.incs, ev)
			}
		default:
			return batch{}, fmt.Errorf("%w: unknown kind %d", events.ErrInvalid, ev.GetKind())
		}
	}
	b.superseded = len(evs) - len(b.likes) - len(b.follows) - len(b.incs)
	return b, nil
}

// keepNewest keeps ev for k unless an event with a version at least as
// high is already kept.
func keepNewest[K comparable](m map[K]*eventsv1.Event, k K, ev *eventsv1.Event) {
	if cur, ok := m[k]; !ok || ev.GetVersion() > cur.GetVersion() {
		m[k] = ev
	}
}

// likePairs: item_likes rows; a transition moves the item's likes count.
var likePairs = pairPhase[likeKey]{
	what: "like",
	on:   eventsv1.Kind_KIND_LIKE,
	key: func(ev *eventsv1.Event) likeKey {
		return likeKey{ev.GetNamespace(), ev.GetItemId(), ev.GetUserId()}
	},
	hash: func(k likeKey) [32]byte { return LikeKey(k.ns, k.item, k.user) },
	compare: func(a, b likeKey) int {
		return cmp.Or(cmp.Compare(a.ns, b.ns), cmp.Compare(a.item, b.item), cmp.Compare(a.user, b.user))
	},
	read: func(ctx context.Context, ph phase, keys [][]byte) (map[[32]byte]stored, error) {
		rows, err := ph.read.LikesForUpdate(ctx, keys)
		if err != nil {
			return nil, err
		}
		out := make(map[[32]byte]stored, len(rows))
		for _, r := range rows {
			out[[32]byte(r.LikeKey)] = stored{version: r.Version, on: r.Liked}
		}
		return out, nil
	},
	write: func(ctx context.Context, ph phase, k likeKey, h [32]byte, on bool, version uint64) error {
		return ph.write.UpsertLike(ctx, db.UpsertLikeParams{
			LikeKey: h[:], Namespace: k.ns, ItemID: k.item, UserID: k.user, Liked: on, Version: version,
		})
	},
	count: func(d *deltas, k likeKey, delta int64) {
		d.items[countKey{k.ns, k.item, events.LikesMetric}] += delta
	},
}

// followPairs: follows rows; a transition moves the followee's followers
// and the follower's following.
var followPairs = pairPhase[followKey]{
	what: "follow",
	on:   eventsv1.Kind_KIND_FOLLOW,
	key: func(ev *eventsv1.Event) followKey {
		return followKey{ev.GetUserId(), ev.GetTargetUserId()}
	},
	hash: func(k followKey) [32]byte { return FollowKey(k.follower, k.followee) },
	compare: func(a, b followKey) int {
		return cmp.Or(cmp.Compare(a.follower, b.follower), cmp.Compare(a.followee, b.followee))
	},
	read: func(ctx context.Context, ph phase, keys [][]byte) (map[[32]byte]stored, error) {
		rows, err := ph.read.FollowsForUpdate(ctx, keys)
		if err != nil {
			return nil, err
		}
		out := make(map[[32]byte]stored, len(rows))
		for _, r := range rows {
			out[[32]byte(r.FollowKey)] = stored{version: r.Version, on: r.Active}
		}
		return out, nil
	},
	write: func(ctx context.Context, ph phase, k followKey, h [32]byte, on bool, version uint64) error {
		return ph.write.UpsertFollow(ctx, db.UpsertFollowParams{
			FollowKey: h[:], Follower: k.follower, Followee: k.followee, Active: on, Version: version,
		})
	},
	count: func(d *deltas, k followKey, delta int64) {
		ud := d.users[k.followee]
		ud.followers += delta
		d.users[k.followee] = ud
		ud = d.users[k.follower]
		ud.following += delta
		d.users[k.follower] = ud
	},
}

// applyIncrements applies each INCREMENT and API_CALL event whose id is
// not in processed_events yet (read and locked first), in event id order,
// recording its id; its delta goes to the item count or the API call
// count.
func applyIncrements(ctx context.Context, ph phase, incs []*eventsv1.Event) error {
	if len(incs) == 0 {
		return nil
	}
	ids := make([]string, len(incs))
	for i, ev := range incs {
		ids[i] = ev.GetEventId()
	}
	done, err := ph.read.ProcessedForUpdate(ctx, ids)
	if err != nil {
		return fmt.Errorf("read processed events: %w", err)
	}
	applied := make(map[string]bool, len(done))
	for _, id := range done {
		applied[id] = true
	}
	slices.SortFunc(incs, func(a, b *eventsv1.Event) int { return cmp.Compare(a.GetEventId(), b.GetEventId()) })
	for _, ev := range incs {
		if applied[ev.GetEventId()] {
			ph.res.Ignored++
			continue
		}
		if err := ph.write.MarkProcessed(ctx, db.MarkProcessedParams{
			EventID: ev.GetEventId(), Namespace: ev.GetNamespace(), ItemID: ev.GetItemId(),
			Metric: ev.GetMetric(), Delta: ev.GetDelta(), Version: ev.GetVersion(),
		}); err != nil {
			return fmt.Errorf("mark processed: %w", err)
		}
		ph.res.Increments++
		if ev.GetKind() == eventsv1.Kind_KIND_API_CALL {
			ph.deltas.apis[apiKey{ev.GetProcedure(), ev.GetCode()}] += ev.GetDelta()
		} else {
			ph.deltas.items[countKey{ev.GetNamespace(), ev.GetItemId(), ev.GetMetric()}] += ev.GetDelta()
		}
	}
	return nil
}

// writeMarks raises the offset marks (sorted by sortMarks), after the
// counts, in (topic, partition) order: merged into the same
// multi-statement write.
func writeMarks(ctx context.Context, w *db.Queries, marks []Mark) error {
	for _, m := range marks {
		if err := w.AdvanceOffset(ctx, db.AdvanceOffsetParams{Topic: m.Topic, PartitionID: int32(m.Partition), NextOffset: m.Next}); err != nil {
			return fmt.Errorf("advance offset: %w", err)
		}
	}
	return nil
}

type countKey struct{ ns, item, metric string }
type apiKey struct{ procedure, code string }
type userDelta struct{ followers, following int64 }

// deltas are the count changes of one attempt, summed per row: each row is
// written once, adding its sum (never read and written back).
type deltas struct {
	items map[countKey]int64
	users map[string]userDelta
	apis  map[apiKey]int64
}

func newDeltas() *deltas {
	return &deltas{items: map[countKey]int64{}, users: map[string]userDelta{}, apis: map[apiKey]int64{}}
}

// write adds the sums after every pair and increment, in key order, so
// concurrent batches lock the count rows in the same order; sums of zero
// are skipped (API call counts are written as they are).
func (d *deltas) write(ctx context.Context, w *db.Queries) error {
	for _, k := range sortedKeys(d.items, func(a, b countKey) int {
		return cmp.Or(cmp.Compare(a.ns, b.ns), cmp.Compare(a.item, b.item), cmp.Compare(a.metric, b.metric))
	}) {
		if v := d.items[k]; v != 0 {
			if err := w.AddItemCount(ctx, db.AddItemCountParams{Namespace: k.ns, ItemID: k.item, Metric: k.metric, Value: v}); err != nil {
				return fmt.Errorf("add item count: %w", err)
			}
		}
	}
	for _, u := range sortedKeys(d.users, cmp.Compare[string]) {
		if v := d.users[u]; v != (userDelta{}) {
			if err := w.AddUserCounts(ctx, db.AddUserCountsParams{UserID: u, Followers: v.followers, Following: v.following}); err != nil {
				return fmt.Errorf("add user counts: %w", err)
			}
		}
	}
	for _, k := range sortedKeys(d.apis, func(a, b apiKey) int {
		return cmp.Or(cmp.Compare(a.procedure, b.procedure), cmp.Compare(a.code, b.code))
	}) {
		if err := w.AddAPICalls(ctx, db.AddAPICallsParams{ProcedureName: k.procedure, Code: k.code, Calls: d.apis[k]}); err != nil {
			return fmt.Errorf("add api calls: %w", err)
		}
	}
	return nil
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
