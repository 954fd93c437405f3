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
// neither checked nor set: Redis is the only truth, and state written then
// is adopted as complete if a durable record is configured later.

// loadedLua defines loaded(hash, flag): true when the hash is marked
// complete, or when no durable record exists (flag "0").
const loadedLua = `
local function loaded(hash, flag)
  if flag ~= '1' then return true end
  return redis.call('HEXISTS', hash, '_l') == 1
end
`

// xaddLua defines xadd(stream, maxlen, field, value, ...), shared by the
// scripts.
const xaddLua = `
local function xadd(stream, maxlen, ...)
  if maxlen ~= '0' then
    return redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', ...)
  end
  return redis.call('XADD', stream, '*', ...)
end
`

// likeScript likes (ARGV[4] = "1") or unlikes (ARGV[4] = "-1") an item.
//
//	KEYS[1] likers set   KEYS[2] counts hash   KEYS[3] outbox stream
//	ARGV[1] user  ARGV[2] namespace  ARGV[3] item id  ARGV[4] 1 | -1
//	ARGV[5] outbox bound  ARGV[6] load flag
//
// Returns {changed (0|1), likes}. The likers set guards the counter: an
// unlike of an item not liked changes nothing, so the count cannot go
// negative, and a repeated like does not count twice. {-9, 0}: not loaded.
var likeScript = redis.NewScript(xaddLua + loadedLua + `
if not loaded(KEYS[2], ARGV[6]) then return {-9, 0} end
local changed
if ARGV[4] == '1' then
  changed = redis.call('SADD', KEYS[1], ARGV[1])
else
  changed = redis.call('SREM', KEYS[1], ARGV[1])
end
if changed == 1 then
  local n = redis.call('HINCRBY', KEYS[2], 'likes', ARGV[4])
  local kind = 'unlike'
  if ARGV[4] == '1' then kind = 'like' end
  xadd(KEYS[3], ARGV[5], 'k', kind, 'u', ARGV[1], 'ns', ARGV[2], 'id', ARGV[3], 'd', ARGV[4])
  return {1, n}
end
return {0, tonumber(redis.call('HGET', KEYS[2], 'likes') or '0')}
`)

// followScript makes ARGV[1] follow (ARGV[3] = "1") or unfollow
// (ARGV[3] = "-1") ARGV[2].
//
//	KEYS[1] following set of a  KEYS[2] followers set of b
//	KEYS[3] user hash of a      KEYS[4] user hash of b      KEYS[5] outbox
//	ARGV[1] a  ARGV[2] b  ARGV[3] 1 | -1  ARGV[4] outbox bound
//	ARGV[5] load flag
//
// Returns {changed (0|1), following of a, followers of b}, or {-9, a not
// loaded (0|1), b not loaded (0|1)}.
var followScript = redis.NewScript(xaddLua + loadedLua + `
local la = loaded(KEYS[3], ARGV[5])
local lb = loaded(KEYS[4], ARGV[5])
if not (la and lb) then
  local na, nb = 0, 0
  if not la then na = 1 end
  if not lb then nb = 1 end
  return {-9, na, nb}
end
local changed
if ARGV[3] == '1' then
  changed = redis.call('SADD', KEYS[1], ARGV[2])
  if changed == 1 then redis.call('SADD', KEYS[2], ARGV[1]) end
else
  changed = redis.call('SREM', KEYS[1], ARGV[2])
  if changed == 1 then redis.call('SREM', KEYS[2], ARGV[1]) end
end
if changed == 1 then
  local following = redis.call('HINCRBY', KEYS[3], 'following', ARGV[3])
  local followers = redis.call('HINCRBY', KEYS[4], 'followers', ARGV[3])
  local kind = 'unfollow'
  if ARGV[3] == '1' then kind = 'follow' end
  xadd(KEYS[5], ARGV[4], 'k', kind, 'u', ARGV[1], 't', ARGV[2], 'd', ARGV[3])
  return {1, following, followers}
end
return {0, tonumber(redis.call('HGET', KEYS[3], 'following') or '0'),
           tonumber(redis.call('HGET', KEYS[4], 'followers') or '0')}
`)

// incrScript adds a delta to a metric once per idempotency key.
//
//	KEYS[1] idempotency record  KEYS[2] counts hash  KEYS[3] outbox
//	ARGV[1] fingerprint of (namespace, id, metric, delta)  ARGV[2] metric
//	ARGV[3] delta  ARGV[4] record TTL in seconds  ARGV[5] user
//	ARGV[6] namespace  ARGV[7] item id  ARGV[8] idempotency key
//	ARGV[9] most metrics (besides likes) an item may have  ARGV[10] outbox bound
//	ARGV[11] load flag
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
xadd(KEYS[3], ARGV[10], 'k', 'incr', 'u', ARGV[5], 'ns', ARGV[6], 'id', ARGV[7],
  'm', ARGV[2], 'd', ARGV[3], 'ik', ARGV[8])
return {1, v}
`)

// seedItemScript installs an item's state from the durable record, only
// while the item is not loaded, so concurrent seeders and writes are safe.
//
//	KEYS[1] counts hash  KEYS[2] likers set
//	ARGV[1] number n of metric pairs  ARGV[2..1+2n] metric, value pairs
//	ARGV[2+2n..] likers
//
// Returns 0 when the item was loaded already (nothing changed), 1 when the
// state was installed, 2 when an unmarked but complete state was found
// (written by the reconciler or by a counter without a durable record) and
// adopted as it is. Partial state (a counts hash with likes but no likers
// set, or a likers set without its hash: an eviction) is replaced.
var seedItemScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], '_l') == 1 then return 0 end
if redis.call('EXISTS', KEYS[1]) == 1 then
  local likes = tonumber(redis.call('HGET', KEYS[1], 'likes') or '0')
  if likes == 0 or redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('HSET', KEYS[1], '_l', '1')
    return 2
  end
end
redis.call('DEL', KEYS[1], KEYS[2])
local n = tonumber(ARGV[1])
local first = 2 + 2 * n
redis.call('HSET', KEYS[1], '_l', '1', 'likes', #ARGV - first + 1)
for i = 0, n - 1 do
  redis.call('HSET', KEYS[1], ARGV[2 + 2 * i], ARGV[3 + 2 * i])
end
for i = first, #ARGV, 1000 do
  redis.call('SADD', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
return 1
`)

// seedUserScript installs a user's follow state from the durable record,
// only while the user is not loaded.
//
//	KEYS[1] user hash  KEYS[2] following set  KEYS[3] followers set
//	ARGV[1] number n of users followed  ARGV[2..1+n] users followed
//	ARGV[2+n..] followers
//
// Returns 0 (was loaded), 1 (installed) or 2 (an unmarked user hash was
// adopted as it is).
var seedUserScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], '_l') == 1 then return 0 end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], '_l', '1')
  return 2
end
redis.call('DEL', KEYS[2], KEYS[3])
local n = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], '_l', '1', 'following', n, 'followers', #ARGV - 1 - n)
for i = 2, 1 + n, 1000 do
  redis.call('SADD', KEYS[2], unpack(ARGV, i, math.min(i + 999, 1 + n)))
end
for i = 2 + n, #ARGV, 1000 do
  redis.call('SADD', KEYS[3], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
return 1
`)

var allScripts = []*redis.Script{likeScript, followScript, incrScript, seedItemScript, seedUserScript}
