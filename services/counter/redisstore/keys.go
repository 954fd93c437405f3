package redisstore

import (
	"strconv"
	"strings"

	"github.com/highgopress/highgopress/services/counter/domain"
	"github.com/highgopress/highgopress/services/counter/outbox"
)

// Key layout. Every part is validated before it gets here (see package
// validate), so no key contains braces, glob characters or whitespace.
//
// An item's keys share the hash tag {<ns>:<id>} so they sit in one slot;
// namespaces cannot contain ':' so the tag is unambiguous.

// CountsKey is the hash of an item's counters: field "likes" plus one field
// per generic metric.
func CountsKey(it domain.ItemRef) string { return "hgp:c:{" + it.Namespace + ":" + it.ID + "}" }

// WatchChannel is the pub/sub channel an item's changes are published on
// (by the write scripts, in the same atomic step as the write; by the
// settle worker right after a correction), for WatchCounts. The payload
// is informational (the new like count or metric value): watchers re-read
// the counts hash. It carries the item's hash tag too.
func WatchChannel(it domain.ItemRef) string {
	return WatchChannelPrefix + it.Namespace + ":" + it.ID + "}"
}

// WatchChannelPrefix starts every watch channel: "hgp:w:{<ns>:<id>}".
const WatchChannelPrefix = "hgp:w:{"

// ParseWatchChannel returns the item of a watch channel.
func ParseWatchChannel(ch string) (domain.ItemRef, bool) {
	rest, ok := strings.CutPrefix(ch, WatchChannelPrefix)
	if !ok {
		return domain.ItemRef{}, false
	}
	rest, ok = strings.CutSuffix(rest, "}")
	if !ok {
		return domain.ItemRef{}, false
	}
	ns, id, ok := strings.Cut(rest, ":")
	if !ok || ns == "" || id == "" {
		return domain.ItemRef{}, false
	}
	return domain.ItemRef{Namespace: ns, ID: id}, true
}

// LikersKey is the set of users who like an item.
func LikersKey(it domain.ItemRef) string { return "hgp:lk:{" + it.Namespace + ":" + it.ID + "}" }

// FollowingKey is the set of users user follows.
func FollowingKey(user string) string { return "hgp:fg:" + user }

// FollowersKey is the set of users following user.
func FollowersKey(user string) string { return "hgp:fr:" + user }

// UserKey is the hash {followers, following} of a user.
func UserKey(user string) string { return "hgp:u:" + user }

// IdempotencyKey is the record of an Increment by user under key. The user
// sits in braces: user ids may contain ':', and without a delimiter user
// "a" with key "b:c..." and user "a:b" with key "c..." would share a record.
func IdempotencyKey(user, key string) string { return "hgp:idem:{" + user + "}:" + key }

// LoadedField marks an item's counts hash (and a user's hash) whose state
// is complete in Redis. Without it, and with a durable record configured,
// the state is rebuilt from MySQL before it is used (see the scripts). It
// is never reported as a metric.
const LoadedField = "_l"

// AbsentField marks an item's counts hash (a user's hash) installed for a
// read that found nothing in the durable record: an "absent" entry, which
// expires (WithAbsentTTL) and which reads serve as zero counts. Writes do
// not accept it as loaded: they rebuild the state for real (the seed
// scripts replace the entry), so written state is never left to expire.
const AbsentField = "_n"

// Settling: state rebuilt from MySQL may miss events that were still on
// their way to MySQL (in the outbox, in a relay, in Kafka). Each rebuild
// records a boundary in a settle hash and queues it; writes to the state
// while it is queued record which pairs they touched; a settle worker later
// applies what MySQL learned in the meantime (see Store.SettleItem).

// SettleQueue is the sorted set of settle hashes waiting to be settled,
// scored by when they are due (milliseconds, Redis clock).
const SettleQueue = "hgp:settle"

// SettleKey is an item's settle hash: field "b" the boundary (an outbox
// stream id: every event before the rebuild is older, every later one
// newer), fields "m:<metric>" the metric values the rebuild installed.
func SettleKey(it domain.ItemRef) string { return "hgp:s:{" + it.Namespace + ":" + it.ID + "}" }

// TouchedKey is the set of users whose like of the item changed (or was
// asserted) since the rebuild; settling leaves their state alone.
func TouchedKey(it domain.ItemRef) string { return "hgp:t:{" + it.Namespace + ":" + it.ID + "}" }

// UserSettleKey is a user's settle hash (field "b").
func UserSettleKey(user string) string { return userSettlePrefix + user }

// UserTouchedKey is the set of a user's follow pairs touched since the
// rebuild: "g:<followee>" and "r:<follower>".
func UserTouchedKey(user string) string { return "hgp:tu:" + user }

const (
	itemSettlePrefix = "hgp:s:{"
	userSettlePrefix = "hgp:su:"
)

// ParseSettleKey returns the item or the user a settle hash belongs to.
func ParseSettleKey(key string) (item domain.ItemRef, user string, ok bool) {
	if u, found := strings.CutPrefix(key, userSettlePrefix); found && u != "" {
		return domain.ItemRef{}, u, true
	}
	rest, found := strings.CutPrefix(key, itemSettlePrefix)
	if !found {
		return domain.ItemRef{}, "", false
	}
	rest, found = strings.CutSuffix(rest, "}")
	if !found {
		return domain.ItemRef{}, "", false
	}
	ns, id, found := strings.Cut(rest, ":")
	if !found || ns == "" || id == "" {
		return domain.ItemRef{}, "", false
	}
	return domain.ItemRef{Namespace: ns, ID: id}, "", true
}

// Redis Cluster layout (WithCluster). A script may only touch keys of one
// hash slot, and a write's outbox entry is appended in the same script as
// the state it records, so the outbox cannot be one stream: it is split
// into ClusterShards streams, and every item belongs to one shard (FNV-1a
// of "<ns>:<id>" modulo ClusterShards) whose hash tag {s<k>} all of the
// item's keys carry instead of {<ns>:<id>}. The relay reads every shard's
// stream (ClusterOutboxStreams). On a single Redis the layout above is
// unchanged (one stream hgp:outbox, item tags {<ns>:<id>}).

// ClusterShards is the number of outbox shards (and hash slots holding
// items) of the cluster layout: at most this many masters share the write
// load, and changing it moves every item's keys (a migration, not a
// setting).
const ClusterShards = 128

// ClusterShard is the shard of an item in the cluster layout.
func ClusterShard(it domain.ItemRef) int {
	h := uint32(2166136261)
	for _, s := range [...]string{it.Namespace, ":", it.ID} {
		for i := 0; i < len(s); i++ {
			h ^= uint32(s[i])
			h *= 16777619
		}
	}
	return int(h % ClusterShards)
}

// ClusterOutboxStream is shard k's outbox stream, "hgp:outbox:{s<k>}".
func ClusterOutboxStream(k int) string { return outbox.Stream + ":" + shardTag(k) }

// ClusterOutboxStreams are every shard's outbox stream.
func ClusterOutboxStreams() []string {
	out := make([]string, ClusterShards)
	for k := range out {
		out[k] = ClusterOutboxStream(k)
	}
	return out
}

func shardTag(k int) string { return "{s" + strconv.Itoa(k) + "}" }

// layout names the keys a script touches: the single-Redis names above,
// or the cluster layout's.
type layout struct{ cluster bool }

// itemKey is prefix + the item's tagged name: "hgp:c:{a:1}" or
// "hgp:c:{s17}a:1".
func (l layout) itemKey(prefix string, it domain.ItemRef) string {
	if !l.cluster {
		return prefix + "{" + it.Namespace + ":" + it.ID + "}"
	}
	return prefix + shardTag(ClusterShard(it)) + it.Namespace + ":" + it.ID
}

func (l layout) counts(it domain.ItemRef) string  { return l.itemKey("hgp:c:", it) }
func (l layout) likers(it domain.ItemRef) string  { return l.itemKey("hgp:lk:", it) }
func (l layout) settle(it domain.ItemRef) string  { return l.itemKey("hgp:s:", it) }
func (l layout) touched(it domain.ItemRef) string { return l.itemKey("hgp:t:", it) }

// outbox is the stream an item's events go to.
func (l layout) outbox(it domain.ItemRef) string {
	if !l.cluster {
		return outbox.Stream
	}
	return ClusterOutboxStream(ClusterShard(it))
}

// idempotency is the record of an Increment of it by user under key. In
// the cluster layout it lives in the item's slot (the script changes the
// item in the same step), so a key is unique per (user, item): reusing it
// on another item is not detected as a conflict there. '/' cannot occur in
// user ids or keys, so the name is unambiguous.
func (l layout) idempotency(user, key string, it domain.ItemRef) string {
	if !l.cluster {
		return IdempotencyKey(user, key)
	}
	return l.itemKey("hgp:idem:", it) + "/" + user + "/" + key
}
