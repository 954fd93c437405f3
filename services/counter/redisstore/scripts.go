package redisstore

import "github.com/redis/go-redis/v9"

// Each script is one atomic step: it checks the current state, changes the
// counters only when the state changes, and appends the event to the outbox
// stream in the same step, so the outbox holds exactly the state changes.
// Results are arrays of integers; the first element says what happened.
//
// Every script takes the outbox bound as its last argument: "0" appends
// with a plain XADD (never trimmed, the default), n > 0 with XADD MAXLEN ~ n
// (see WithOutboxMaxLen).

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
//	ARGV[5] outbox bound
//
// Returns {changed (0|1), likes}. The likers set guards the counter: an
// unlike of an item not liked changes nothing, so the count cannot go
// negative, and a repeated like does not count twice.
var likeScript = redis.NewScript(xaddLua + `
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
//
// Returns {changed (0|1), following of a, followers of b}.
var followScript = redis.NewScript(xaddLua + `
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
//
// Returns {1, value} when applied, {0, value first returned} for a repeat
// with the same parameters, {-1, 0} for a key reused with other parameters,
// {-2, metrics the item has} when the metric is new and the item already has
// ARGV[9] metrics (nothing is changed and no record is kept, so a retry is
// refused again as long as the item is full).
var incrScript = redis.NewScript(xaddLua + `
local rec = redis.call('HMGET', KEYS[1], 'f', 'v')
if rec[1] then
  if rec[1] == ARGV[1] then return {0, tonumber(rec[2])} end
  return {-1, 0}
end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then
  local n = redis.call('HLEN', KEYS[2]) - redis.call('HEXISTS', KEYS[2], 'likes')
  if n >= tonumber(ARGV[9]) then return {-2, n} end
end
local v = redis.call('HINCRBY', KEYS[2], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[1], 'f', ARGV[1], 'v', v)
redis.call('EXPIRE', KEYS[1], ARGV[4])
xadd(KEYS[3], ARGV[10], 'k', 'incr', 'u', ARGV[5], 'ns', ARGV[6], 'id', ARGV[7],
  'm', ARGV[2], 'd', ARGV[3], 'ik', ARGV[8])
return {1, v}
`)

var allScripts = []*redis.Script{likeScript, followScript, incrScript}
