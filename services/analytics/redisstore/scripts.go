package redisstore

import "github.com/redis/go-redis/v9"

// applyScript applies one batch of events atomically (see Store.Apply for
// the rules). Score moves are summed per (set, item) first, so a hot item
// costs one ZINCRBY per set and batch.
//
//	ARGV[1] likes, ARGV[2] API calls, ARGV[3] change channel, ARGV[4] gen key prefix
//	per like (8):  pairKey user newState allKey item minuteKey hourKey ns
//	               (newState is "+"/"-" then the 20-digit version; a bucket
//	               key is "" when the bucket is already outside every window)
//	per API call:  seenKey eventID nops, then nops × (key field increment)
//	then:          nexp, then nexp × (key ttlMillis)
//
// Versions are 20-digit zero-padded decimals, so string order is numeric
// order (Lua numbers are doubles and cannot hold 64-bit versions).
var applyScript = redis.NewScript(`
local nl = tonumber(ARGV[1])
local na = tonumber(ARGV[2])
local chan = ARGV[3]
local genp = ARGV[4]
local i = 5
local trans, ignored, api, dup = 0, 0, 0, 0
local changed = {}
local agg = {}
local function bump(key, item, d)
  local t = agg[key]
  if not t then t = {}; agg[key] = t end
  t[item] = (t[item] or 0) + d
end
for _ = 1, nl do
  local pk, user, nv = ARGV[i], ARGV[i+1], ARGV[i+2]
  local allk, item, mk, hk, ns = ARGV[i+3], ARGV[i+4], ARGV[i+5], ARGV[i+6], ARGV[i+7]
  i = i + 8
  local cur = redis.call('HGET', pk, user)
  if cur and string.sub(cur, 2) >= string.sub(nv, 2) then
    ignored = ignored + 1
  else
    redis.call('HSET', pk, user, nv)
    local was = (cur and string.sub(cur, 1, 1) == '+') or false
    local on = string.sub(nv, 1, 1) == '+'
    if was == on then
      ignored = ignored + 1
    else
      local d = -1
      if on then d = 1 end
      bump(allk, item, d)
      if mk ~= '' then bump(mk, item, d) end
      if hk ~= '' then bump(hk, item, d) end
      trans = trans + 1
      changed[ns] = true
    end
  end
end
for key, t in pairs(agg) do
  for item, d in pairs(t) do
    if d ~= 0 then
      local sc = redis.call('ZINCRBY', key, d, item)
      if tonumber(sc) == 0 then redis.call('ZREM', key, item) end
    end
  end
end
for _ = 1, na do
  local sk, id, nops = ARGV[i], ARGV[i+1], tonumber(ARGV[i+2])
  i = i + 3
  if redis.call('SADD', sk, id) == 1 then
    for _ = 1, nops do
      redis.call('HINCRBY', ARGV[i], ARGV[i+1], ARGV[i+2])
      i = i + 3
    end
    api = api + 1
  else
    dup = dup + 1
    i = i + 3 * nops
  end
end
local ne = tonumber(ARGV[i])
i = i + 1
for _ = 1, ne do
  redis.call('PEXPIRE', ARGV[i], ARGV[i+1])
  i = i + 2
end
for ns, _ in pairs(changed) do
  redis.call('INCR', genp .. ns)
  redis.call('PUBLISH', chan, ns)
end
return {trans, ignored, api, dup}
`)

// snapshotScript cuts a ranking snapshot: the union of the window's
// buckets with negated scores (so ZRANGE orders by score descending, then
// item ascending), without items whose net score is not positive, and its
// meta key; both expire after the snapshot TTL.
//
//	KEYS[1] snapshot, KEYS[2] meta, KEYS[3..] buckets
//	ARGV[1] ttl millis, ARGV[2] meta value
var snapshotScript = redis.NewScript(`
local n = #KEYS - 2
if n > 0 then
  local args = {'ZUNIONSTORE', KEYS[1], n}
  for k = 3, #KEYS do args[#args+1] = KEYS[k] end
  args[#args+1] = 'WEIGHTS'
  for _ = 1, n do args[#args+1] = -1 end
  redis.call(unpack(args))
  redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, '+inf')
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
local count = redis.call('ZCARD', KEYS[1])
redis.call('SET', KEYS[2], ARGV[2] .. '|' .. count, 'PX', ARGV[1])
return count
`)

// pageScript reads a page of a snapshot: nil when its meta expired,
// otherwise {meta, members and (negated) scores}.
//
//	KEYS[1] snapshot, KEYS[2] meta; ARGV[1] start, ARGV[2] stop
var pageScript = redis.NewScript(`
local meta = redis.call('GET', KEYS[2])
if not meta then return false end
return {meta, redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2], 'WITHSCORES')}
`)
