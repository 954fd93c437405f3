package redisstore

import "github.com/highgopress/highgopress/services/counter/domain"

// OutboxStream is the Redis stream the scripts append events to, read by the
// relay. The writer never trims it unless WithOutboxMaxLen says so.
const OutboxStream = "hgp:outbox"

// Key layout. Every part is validated before it gets here (see package
// validate), so no key contains braces, glob characters or whitespace.
//
// An item's keys share the hash tag {<ns>:<id>} so they sit in one slot;
// namespaces cannot contain ':' so the tag is unambiguous.

// CountsKey is the hash of an item's counters: field "likes" plus one field
// per generic metric.
func CountsKey(it domain.ItemRef) string { return "hgp:c:{" + it.Namespace + ":" + it.ID + "}" }

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
