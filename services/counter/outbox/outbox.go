// Package outbox is the counter's private contract between its Lua scripts,
// which append an event to a Redis stream in the same atomic step as the
// state change, and its relay, which reads the stream through a consumer
// group and moves the events to Kafka. Nothing outside the counter reads the
// stream; the Kafka side of the contract is platform/events.
//
// The scripts (package redisstore) write these names as literals in Lua;
// TestScriptsWriteTheOutboxContract there checks that they match.
package outbox

// Stream is the Redis stream of the outbox.
const Stream = "hgp:outbox"

// Group is the consumer group the relays read the stream through.
const Group = "relay"

// Field names of an outbox entry.
const (
	FieldKind        = "k"  // one of the Kind values
	FieldUser        = "u"  // acting user
	FieldNamespace   = "ns" // item namespace (likes, increments)
	FieldItem        = "id" // item id (likes, increments)
	FieldTarget      = "t"  // followed user (follows)
	FieldDelta       = "d"  // +1/-1, or an increment's delta
	FieldMetric      = "m"  // increment metric
	FieldIdemKey     = "ik" // increment idempotency key
	FieldTraceparent = "tp" // W3C trace context of the request, when it had one
)

// Values of FieldKind.
const (
	KindLike     = "like"
	KindUnlike   = "unlike"
	KindFollow   = "follow"
	KindUnfollow = "unfollow"
	KindIncr     = "incr"
	// KindBoundary marks a rebuild's boundary; it is deleted at once and
	// never relayed.
	KindBoundary = "boundary"
)
