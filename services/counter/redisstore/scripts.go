package redisstore

import "github.com/redis/go-redis/v9"

// Each script is one atomic step: it checks the current state, changes the
// counters only when the state changes, and appends the event to the outbox
// stream in the same step, so the outbox holds exactly the state changes.
// Results are arrays of integers; the first element says what happened.
//
// Every write script takes the outbox bound as its second-to-last argument:
// "0" appends with a plain XADD (never trimmed, the default), n > 0 with
// XADD MAXLEN ~ n (see WithOutboxMaxLen). Its last argument is the load
// flag: "1" when a durable record (MySQL) can rebuild missing state. Every
// item counts hash and user hash carries the field LoadedField once its
// state is complete in Redis; a script that finds it missing returns
// notLoaded (-9) and changes nothing when the flag is "1" (the caller
// rebuilds the state and runs it again). With the flag "0" the field is
// neither checked nor set: Redis is the only truth; if a durable record is
// configured later, state written then is rebuilt from it on first use.

// loadedLua defines loaded(hash, flag): true when the hash is marked
// complete, or when no durable record exists (flag "0").
const loadedLua = `
local function loaded(hash, flag)
  if flag ~= '1' then return true end
  return redis.call('HEXISTS', hash, '_l') == 1
end
`

// xaddLua defines xadd(stream, maxlen, tp, field, value, ...), shared by
// the scripts: tp, the W3C traceparent of the request, is stored as field
// "tp" when it is not empty (the relay copies it to the Kafka message).
const xaddLua = `
local function xadd(stream, maxlen, tp, ...)
  local fields = {...}
  if tp ~= '' then
    fields[#fields + 1] = 'tp'
    fields[#fields + 1] = tp
  end
  if maxlen ~= '0' then
    return redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', unpack(fields))
  end
  return redis.call('XADD', stream, '*', unpack(fields))
end
`

// likeScript likes (ARGV[4] = "1") or unlikes (ARGV[4] = "-1") an item.
//
//	KEYS[1] likers set   KEYS[2] counts hash   KEYS[3] outbox stream
//	KEYS[4] settle hash  KEYS[5] touched set
//	ARGV[1] user  ARGV[2] namespace  ARGV[3] item id  ARGV[4] 1 | -1
//	ARGV[5] outbox bound  ARGV[6] load flag  ARGV[7] traceparent ("" none)
//	ARGV[8] watch channel (WatchChannel)
//
// A change is published on the item's watch channel (payload: the new like
// count), in the same atomic step as the write, for WatchCounts.
//
// Returns {changed (0|1), likes}. The likers set guards the counter: an
// unlike of an item not liked changes nothing, so the count cannot go
// negative, and a repeated like does not count twice. {-9, 0}: not loaded.
//
// While the item waits to be settled (its settle hash exists) the user is
// recorded as touched, and a like or unlike that changes nothing in Redis
// is still appended to the outbox: the rebuilt state may have missed an
// older event of this user, and MySQL must end in the state the user asked
// for last.
var likeScript = redis.NewScript(xaddLua + loadedLua + `
if not loaded(KEYS[2], ARGV[6]) then return {-9, 0} end
local changed
if ARGV[4] == '1' then
  changed = redis.call('SADD', KEYS[1], ARGV[1])
else
  changed = redis.call('SREM', KEYS[1], ARGV[1])
end
local settling = redis.call('EXISTS', KEYS[4]) == 1
if settling then redis.call('SADD', KEYS[5], ARGV[1]) end
local kind = 'unlike'
if ARGV[4] == '1' then kind = 'like' end
if changed == 1 then
  local n = redis.call('HINCRBY', KEYS[2], 'likes', ARGV[4])
  xadd(KEYS[3], ARGV[5], ARGV[7], 'k', kind, 'u', ARGV[1], 'ns', ARGV[2], 'id', ARGV[3], 'd', ARGV[4])
  redis.call('PUBLISH', ARGV[8], n)
  return {1, n}
end
if settling then
  xadd(KEYS[3], ARGV[5], ARGV[7], 'k', kind, 'u', ARGV[1], 'ns', ARGV[2], 'id', ARGV[3], 'd', ARGV[4])
end
return {0, tonumber(redis.call('HGET', KEYS[2], 'likes') or '0')}
`)

// followScript makes ARGV[1] follow (ARGV[3] = "1") or unfollow
// (ARGV[3] = "-1") ARGV[2].
//
//	KEYS[1] following set of a  KEYS[2] followers set of b
//	KEYS[3] user hash of a      KEYS[4] user hash of b      KEYS[5] outbox
//	KEYS[6] settle hash of a    KEYS[7] touched set of a
//	KEYS[8] settle hash of b    KEYS[9] touched set of b
//	ARGV[1] a  ARGV[2] b  ARGV[3] 1 | -1  ARGV[4] outbox bound
//	ARGV[5] load flag  ARGV[6] traceparent ("" none)
//
// Returns {changed (0|1), following of a, followers of b}, or {-9, a not
// loaded (0|1), b not loaded (0|1)}. Changed is a's view (its following
// set). Each side's count follows its own set, so the counts stay equal
// to the sets' sizes even when the two sides disagree — as they can for a
// while when a and b were rebuilt from MySQL at different moments; the
// request then sets both sides and goes to the outbox. While a or b waits
// to be settled the pair is recorded as touched there and a follow or
// unfollow that changes nothing is still appended to the outbox (see
// likeScript).
var followScript = redis.NewScript(xaddLua + loadedLua + `
local la = loaded(KEYS[3], ARGV[5])
local lb = loaded(KEYS[4], ARGV[5])
if not (la and lb) then
  local na, nb = 0, 0
  if not la then na = 1 end
  if not lb then nb = 1 end
  return {-9, na, nb}
end
local ca, cb
if ARGV[3] == '1' then
  ca = redis.call('SADD', KEYS[1], ARGV[2])
  cb = redis.call('SADD', KEYS[2], ARGV[1])
else
  ca = redis.call('SREM', KEYS[1], ARGV[2])
  cb = redis.call('SREM', KEYS[2], ARGV[1])
end
local settling = false
if redis.call('EXISTS', KEYS[6]) == 1 then
  redis.call('SADD', KEYS[7], 'g:' .. ARGV[2])
  settling = true
end
if redis.call('EXISTS', KEYS[8]) == 1 then
  redis.call('SADD', KEYS[9], 'r:' .. ARGV[1])
  settling = true
end
local following, followers
if ca == 1 then
  following = redis.call('HINCRBY', KEYS[3], 'following', ARGV[3])
else
  following = tonumber(redis.call('HGET', KEYS[3], 'following') or '0')
end
if cb == 1 then
  followers = redis.call('HINCRBY', KEYS[4], 'followers', ARGV[3])
else
  followers = tonumber(redis.call('HGET', KEYS[4], 'followers') or '0')
end
if ca == 1 or cb == 1 or settling then
  local kind = 'unfollow'
  if ARGV[3] == '1' then kind = 'follow' end
  xadd(KEYS[5], ARGV[4], ARGV[6], 'k', kind, 'u', ARGV[1], 't', ARGV[2], 'd', ARGV[3])
end
return {ca, following, followers}
`)

// incrScript adds a delta to a metric once per idempotency key.
//
//	KEYS[1] idempotency record  KEYS[2] counts hash  KEYS[3] outbox
//	ARGV[1] fingerprint of (namespace, id, metric, delta)  ARGV[2] metric
//	ARGV[3] delta  ARGV[4] record TTL in seconds  ARGV[5] user
//	ARGV[6] namespace  ARGV[7] item id  ARGV[8] idempotency key
//	ARGV[9] most metrics (besides likes) an item may have  ARGV[10] outbox bound
//	ARGV[11] load flag  ARGV[12] traceparent ("" none)
//	ARGV[13] watch channel (WatchChannel): an applied increment is published
//
// Returns {1, value} when applied, {0, value first returned} for a repeat
// with the same parameters, {-1, 0} for a key reused with other parameters,
// {-2, metrics the item has} when the metric is new and the item already has
// ARGV[9] metrics (nothing is changed and no record is kept, so a retry is
// refused again as long as the item is full), {-9, 0} when the item is not
// loaded.
var incrScript = redis.NewScript(xaddLua + loadedLua + `
local rec = redis.call('HMGET', KEYS[1], 'f', 'v')
if rec[1] then
  if rec[1] == ARGV[1] then return {0, tonumber(rec[2])} end
  return {-1, 0}
end
if not loaded(KEYS[2], ARGV[11]) then return {-9, 0} end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then
  local n = redis.call('HLEN', KEYS[2]) - redis.call('HEXISTS', KEYS[2], 'likes')
    - redis.call('HEXISTS', KEYS[2], '_l')
  if n >= tonumber(ARGV[9]) then return {-2, n} end
end
local v = redis.call('HINCRBY', KEYS[2], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[1], 'f', ARGV[1], 'v', v)
redis.call('EXPIRE', KEYS[1], ARGV[4])
xadd(KEYS[3], ARGV[10], ARGV[12], 'k', 'incr', 'u', ARGV[5], 'ns', ARGV[6], 'id', ARGV[7],
  'm', ARGV[2], 'd', ARGV[3], 'ik', ARGV[8])
redis.call('PUBLISH', ARGV[13], v)
return {1, v}
`)

// boundaryLua defines boundary(stream, delay, settle, touched, queue),
// which queues a rebuilt state for settling (delay "0": settling is off,
// nothing happens). The boundary is an outbox stream id that every event
// appended before it is older than and every later one newer: the stream's
// last id is moved ahead by appending an entry with an explicit id and
// deleting it at once (no reader sees it; Redis keeps the last id). Ahead
// by one millisecond while the stream is the one this Redis has been
// numbering (its epoch key "<stream>:epoch" exists); by a second when the
// epoch key is missing — Redis lost its data (or this is its first
// rebuild), the stream may be a new one, and the lost stream's ids can be
// up to a millisecond ahead of the clock (earlier boundaries): the new ids
// must start above them. If the stream is already past that id, the next
// automatic id is used.
const boundaryLua = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function boundary(stream, delay, settle, touched, queue)
  if delay == '0' then return end
  local ms = now_ms()
  local ahead = 1
  if redis.call('EXISTS', stream .. ':epoch') == 0 then
    ahead = 1000
    redis.call('SET', stream .. ':epoch', ms)
  end
  local id = redis.pcall('XADD', stream, string.format('%d-0', ms + ahead), 'k', 'boundary')
  if type(id) == 'table' and id.err then
    id = redis.call('XADD', stream, '*', 'k', 'boundary')
  end
  redis.call('XDEL', stream, id)
  redis.call('DEL', settle, touched)
  redis.call('HSET', settle, 'b', id)
  redis.call('ZADD', queue, ms + tonumber(delay), settle)
end
`

// seedItemScript installs an item's state from the durable record, only
// while the item is not loaded, so concurrent seeders and writes are safe.
//
//	KEYS[1] counts hash  KEYS[2] likers set  KEYS[3] outbox stream
//	KEYS[4] settle hash  KEYS[5] touched set  KEYS[6] settle queue
//	ARGV[1] settle delay in ms ("0": do not settle)
//	ARGV[2] number n of metric pairs  ARGV[3..2+2n] metric, value pairs
//	ARGV[3+2n..] likers
//
// Returns 0 when the item was loaded already (nothing changed), 1 when the
// state was installed (and queued for settling). State that is not marked
// loaded — an absent entry, what an eviction left (a likers set without
// its hash), or what a counter without a durable record wrote — is
// replaced: the snapshot plus settling is the state the durable record
// holds.
var seedItemScript = redis.NewScript(boundaryLua + `
if redis.call('HEXISTS', KEYS[1], '_l') == 1 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
local n = tonumber(ARGV[2])
local first = 3 + 2 * n
redis.call('HSET', KEYS[1], '_l', '1', 'likes', #ARGV - first + 1)
for i = 0, n - 1 do
  redis.call('HSET', KEYS[1], ARGV[3 + 2 * i], ARGV[4 + 2 * i])
end
for i = first, #ARGV, 1000 do
  redis.call('SADD', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
boundary(KEYS[3], ARGV[1], KEYS[4], KEYS[5], KEYS[6])
if ARGV[1] ~= '0' then
  for i = 0, n - 1 do
    redis.call('HSET', KEYS[4], 'm:' .. ARGV[3 + 2 * i], ARGV[4 + 2 * i])
  end
end
return 1
`)

// seedUserScript installs a user's follow state from the durable record,
// only while the user is not loaded.
//
//	KEYS[1] user hash  KEYS[2] following set  KEYS[3] followers set
//	KEYS[4] outbox stream  KEYS[5] settle hash  KEYS[6] touched set
//	KEYS[7] settle queue
//	ARGV[1] settle delay in ms ("0": do not settle)
//	ARGV[2] number n of users followed  ARGV[3..2+n] users followed
//	ARGV[3+n..] followers
//
// Returns 0 (was loaded) or 1 (installed); state not marked loaded is
// replaced, as by seedItemScript.
var seedUserScript = redis.NewScript(boundaryLua + `
if redis.call('HEXISTS', KEYS[1], '_l') == 1 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
local n = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], '_l', '1', 'following', n, 'followers', #ARGV - 2 - n)
for i = 3, 2 + n, 1000 do
  redis.call('SADD', KEYS[2], unpack(ARGV, i, math.min(i + 999, 2 + n)))
end
for i = 3 + n, #ARGV, 1000 do
  redis.call('SADD', KEYS[3], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
boundary(KEYS[4], ARGV[1], KEYS[5], KEYS[6], KEYS[7])
return 1
`)

// seedAbsentScript installs an absent entry: the durable record has
// nothing for the item (user) a read asked for. Unlike the seeds above it
// queues nothing for settling and the entry expires; writes do not accept
// it (see AbsentField) and the seed scripts replace it.
//
//	KEYS[1] counts hash (user hash)  KEYS[2..] the item's (user's) sets
//	ARGV[1] lifetime in ms
//
// Returns 0 when the state is loaded or absent already (nothing changed),
// 3 when the entry was installed, -1 when other state exists (unmarked or
// partial: the caller runs the regular seed, which replaces it).
var seedAbsentScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], '_l') == 1 or redis.call('HEXISTS', KEYS[1], '_n') == 1 then return 0 end
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return -1 end
end
redis.call('HSET', KEYS[1], '_n', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 3
`)

// claimSettleScript hands out settle hashes that are due: each is pushed
// back by a lease (so a worker that dies does not keep it) and returned
// with its boundary. Entries whose settle hash is gone are dropped.
//
//	KEYS[1] settle queue  ARGV[1] most entries  ARGV[2] lease in ms
//
// Returns {settle key, boundary, ...}.
var claimSettleScript = redis.NewScript(boundaryLua + `
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for _, key in ipairs(due) do
  local b = redis.call('HGET', key, 'b')
  if b then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), key)
    out[#out + 1] = key
    out[#out + 1] = b
  else
    redis.call('ZREM', KEYS[1], key)
  end
end
return out
`)

// postponeSettleScript moves queued settle hashes ARGV[2..] to ARGV[1] ms
// from now (only those still queued).
var postponeSettleScript = redis.NewScript(boundaryLua + `
local at = now_ms() + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', at, ARGV[i])
end
return {0}
`)

// settleItemScript applies what MySQL holds for an item, counting only
// events older than the boundary, to the state rebuilt at that boundary.
//
//	KEYS[1] counts hash  KEYS[2] likers set  KEYS[3] settle hash
//	KEYS[4] touched set  KEYS[5] settle queue
//	ARGV[1] boundary  ARGV[2] final chunk ("1" | "0")
//	ARGV[3] number n of metrics  ARGV[4..3+2n] metric, correction pairs
//	ARGV[4+2n..] user, liked ("1" | "0") pairs
//
// A user not touched since the rebuild gets MySQL's state and the like
// count follows the membership changes. A metric moves by its correction:
// MySQL's value (without the increments from the boundary on, which are in
// Redis already) minus the value the rebuild installed, computed by the
// caller in 64-bit integers (Lua's numbers are doubles) from the settle
// hash it read. The final chunk (corrections are only passed with it)
// removes the settle state. Chunks may be repeated: membership changes are
// idempotent and the corrections are applied only while the settle hash
// still holds the boundary the caller read them under.
//
// Returns {1, like count change, metric fields changed}, or {0, 0, 0} when
// the settle hash no longer holds this boundary (settled already, or lost
// and rebuilt again), or when the item's state is gone (its settle state
// is then dropped: the next rebuild queues a new one).
var settleItemScript = redis.NewScript(`
if redis.call('HGET', KEYS[3], 'b') ~= ARGV[1] then return {0, 0, 0} end
if redis.call('HEXISTS', KEYS[1], '_l') == 0 then
  redis.call('DEL', KEYS[3], KEYS[4])
  redis.call('ZREM', KEYS[5], KEYS[3])
  return {0, 0, 0}
end
local n = tonumber(ARGV[3])
local d = 0
for i = 4 + 2 * n, #ARGV, 2 do
  local u = ARGV[i]
  if redis.call('SISMEMBER', KEYS[4], u) == 0 then
    if ARGV[i + 1] == '1' then
      d = d + redis.call('SADD', KEYS[2], u)
    else
      d = d - redis.call('SREM', KEYS[2], u)
    end
  end
end
if d ~= 0 then redis.call('HINCRBY', KEYS[1], 'likes', d) end
local fixed = 0
if ARGV[2] == '1' then
  for i = 0, n - 1 do
    if ARGV[5 + 2 * i] ~= '0' then
      redis.call('HINCRBY', KEYS[1], ARGV[4 + 2 * i], ARGV[5 + 2 * i])
      fixed = fixed + 1
    end
  end
  redis.call('DEL', KEYS[3], KEYS[4])
  redis.call('ZREM', KEYS[5], KEYS[3])
end
return {1, d, fixed}
`)

// settleUserScript is settleItemScript for a user's follow pairs. The
// other user of a pair is changed too, when that user is loaded (otherwise
// its own rebuild reads MySQL, which has the pair by then). The other
// users' keys are built here from their names rather than passed in KEYS:
// like the outbox, this needs every key on one Redis primary.
//
//	KEYS[1] user hash  KEYS[2] following set  KEYS[3] followers set
//	KEYS[4] settle hash  KEYS[5] touched set  KEYS[6] settle queue
//	ARGV[1] boundary  ARGV[2] final chunk  ARGV[3] the user
//	ARGV[4] number n of following pairs  ARGV[5..4+2n] followee, active
//	ARGV[5+2n..] follower, active
//
// Returns {1, following change, followers change} or {0, 0, 0}.
var settleUserScript = redis.NewScript(`
if redis.call('HGET', KEYS[4], 'b') ~= ARGV[1] then return {0, 0, 0} end
if redis.call('HEXISTS', KEYS[1], '_l') == 0 then
  redis.call('DEL', KEYS[4], KEYS[5])
  redis.call('ZREM', KEYS[6], KEYS[4])
  return {0, 0, 0}
end
local me = ARGV[3]
local n = tonumber(ARGV[4])
local function set(key, member, on)
  if on then return redis.call('SADD', key, member) end
  return -redis.call('SREM', key, member)
end
local function other(user, set_prefix, field, member, on)
  if redis.call('HEXISTS', 'hgp:u:' .. user, '_l') == 1 then
    local c = set(set_prefix .. user, member, on)
    if c ~= 0 then redis.call('HINCRBY', 'hgp:u:' .. user, field, c) end
  end
end
local dg, dr = 0, 0
for i = 5, 4 + 2 * n, 2 do
  local x, on = ARGV[i], ARGV[i + 1] == '1'
  if redis.call('SISMEMBER', KEYS[5], 'g:' .. x) == 0 then
    dg = dg + set(KEYS[2], x, on)
    other(x, 'hgp:fr:', 'followers', me, on)
  end
end
for i = 5 + 2 * n, #ARGV, 2 do
  local y, on = ARGV[i], ARGV[i + 1] == '1'
  if redis.call('SISMEMBER', KEYS[5], 'r:' .. y) == 0 then
    dr = dr + set(KEYS[3], y, on)
    other(y, 'hgp:fg:', 'following', me, on)
  end
end
if dg ~= 0 then redis.call('HINCRBY', KEYS[1], 'following', dg) end
if dr ~= 0 then redis.call('HINCRBY', KEYS[1], 'followers', dr) end
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[4], KEYS[5])
  redis.call('ZREM', KEYS[6], KEYS[4])
end
return {1, dg, dr}
`)

var allScripts = []*redis.Script{
	likeScript, followScript, incrScript, seedItemScript, seedUserScript, seedAbsentScript,
	claimSettleScript, postponeSettleScript, settleItemScript, settleUserScript,
}
