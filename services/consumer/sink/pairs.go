package sink

import (
	"context"
	"fmt"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
)

type likeKey struct{ ns, item, user string }
type followKey struct{ follower, followee string }

// stored is the state of a pair's row as read: absent is version 0, off.
type stored struct {
	version uint64
	on      bool
}

// pairPhase is one kind of versioned pair (a user liking an item, a user
// following another): one row per pair holding its state and the version
// of the event that set it. The rule is the same for every kind and
// written once, in apply; the fields say how a kind keys, reads, writes
// and counts its pairs.
type pairPhase[K comparable] struct {
	// what names the kind in errors ("like": "read likes", "upsert like").
	what string
	// on is the event kind that turns the pair on (like, follow); the
	// other kind of the pair turns it off.
	on eventsv1.Kind
	// key is the pair of an event.
	key func(*eventsv1.Event) K
	// hash is the row's primary key.
	hash func(K) [32]byte
	// compare orders the writes.
	compare func(a, b K) int
	// read returns the stored rows of the keys (hashes), locked until
	// commit, by primary key.
	read func(ctx context.Context, ph phase, keys [][]byte) (map[[32]byte]stored, error)
	// write upserts the row of a pair (buffered).
	write func(ctx context.Context, ph phase, k K, hash [32]byte, on bool, version uint64) error
	// count adds a transition (+1 turned on, -1 turned off) to the counts.
	count func(d *deltas, k K, delta int64)
}

// apply reads the stored state of every pair of newest (one SELECT … FOR
// UPDATE), then, in key order, writes each pair whose event is newer than
// its stored version and counts the transition from the stored state to
// the event's: nothing when the state stays the same (only the version
// moves), nothing at all for a stale or replayed event.
func (p pairPhase[K]) apply(ctx context.Context, ph phase, newest map[K]*eventsv1.Event) error {
	if len(newest) == 0 {
		return nil
	}
	keys := make([][]byte, 0, len(newest))
	for k := range newest {
		h := p.hash(k)
		keys = append(keys, h[:])
	}
	rows, err := p.read(ctx, ph, keys)
	if err != nil {
		return fmt.Errorf("read %ss: %w", p.what, err)
	}
	for _, k := range sortedKeys(newest, p.compare) {
		ev, h := newest[k], p.hash(k)
		cur := rows[h]
		if ev.GetVersion() <= cur.version {
			ph.res.Ignored++ // stale or replayed
			continue
		}
		on := ev.GetKind() == p.on
		if err := p.write(ctx, ph, k, h, on, ev.GetVersion()); err != nil {
			return fmt.Errorf("upsert %s: %w", p.what, err)
		}
		if on == cur.on {
			ph.res.Ignored++ // newer, same state: only the version moves
			continue
		}
		ph.res.Transitions++
		d := int64(1)
		if !on {
			d = -1
		}
		p.count(ph.deltas, k, d)
	}
	return nil
}
