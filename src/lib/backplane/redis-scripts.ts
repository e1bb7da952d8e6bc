/**
 * The Lua scripts of `RedisBackplane`. Each touches the keys of one group only, which share the
 * group's hash tag (`{group}`), and publishes on the group's shard channel: they run on a Redis
 * Cluster as on a single Redis.
 */

/**
 * Gives a publication the group's next offset, keeps it in the group's capped stream and
 * publishes it, in one step. KEYS: meta hash, stream. ARGV: body, stream length, TTL ms,
 * channel, the epoch to start if the group has none.
 */
export const PUBLISH = `
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[5]
  redis.call('HSET', KEYS[1], 'e', epoch)
  redis.call('DEL', KEYS[2])
end
local offset = redis.call('HINCRBY', KEYS[1], 'o', 1)
local message = offset .. ' ' .. epoch .. ' ' .. ARGV[1]
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], offset .. '-1', 'm', message)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('SPUBLISH', ARGV[4], message)
return {offset, epoch}`;

/** Where a group stands, starting an epoch for a group that has none. KEYS: meta. ARGV: epoch, TTL ms. */
export const POSITION = `
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {tonumber(redis.call('HGET', KEYS[1], 'o') or '0'), epoch}`;

/**
 * The group's messages after an offset of an epoch: `{offset, epoch, 1, messages...}`, or
 * `{offset, epoch, 0}` when the stream no longer has every one. KEYS: meta, stream.
 * ARGV: offset, epoch.
 */
export const HISTORY = `
local offset = tonumber(redis.call('HGET', KEYS[1], 'o') or '0')
local epoch = redis.call('HGET', KEYS[1], 'e') or ''
local since = tonumber(ARGV[1])
if epoch ~= ARGV[2] or since > offset then return {offset, epoch, 0} end
if since == offset then return {offset, epoch, 1} end
local entries = redis.call('XRANGE', KEYS[2], (since + 1) .. '-1', '+')
if #entries ~= offset - since then return {offset, epoch, 0} end
local out = {offset, epoch, 1}
for _, entry in ipairs(entries) do out[#out + 1] = entry[2][2] end
return out`;

/**
 * Adds or refreshes a session's entry; a key seen for the first time is announced as a join.
 * KEYS: entries hash, expiries zset, key counts hash, the sessions' keys hash. ARGV: session,
 * key, entry JSON, expiry, channel, TTL of the keys. (The key is kept apart from the JSON: the
 * scripts never parse what the application put in `meta`.)
 */
export const PRESENCE_JOIN = `
local known = redis.call('HEXISTS', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
if known == 0 and redis.call('HINCRBY', KEYS[3], ARGV[2], 1) == 1 then
  redis.call('SPUBLISH', ARGV[5], 'p {"joins":[' .. ARGV[3] .. '],"leaves":[]}')
end
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[6]) end
return 0`;

/** Extends entries; returns the sessions it no longer has. KEYS: as join. ARGV: expiry, TTL, sessions... */
export const PRESENCE_REFRESH = `
local missing = {}
for i = 3, #ARGV do
  if redis.call('ZSCORE', KEYS[2], ARGV[i]) then
    redis.call('ZADD', KEYS[2], ARGV[1], ARGV[i])
  else
    missing[#missing + 1] = ARGV[i]
  end
end
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
return missing`;

/** Lets an entry end at a time, unless refreshed. KEYS: expiries zset. ARGV: session, expiry. */
export const PRESENCE_LEAVE = `
redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[1])
return 0`;

/**
 * Removes the entries past their end; a key with none left is announced as a leave. Returns the
 * number of members (keys) left. KEYS: as join. ARGV: now, channel.
 */
export const PRESENCE_SWEEP = `
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
local leaves = {}
for _, session in ipairs(gone) do
  local entry = redis.call('HGET', KEYS[1], session)
  local key = redis.call('HGET', KEYS[4], session)
  redis.call('HDEL', KEYS[1], session)
  redis.call('HDEL', KEYS[4], session)
  redis.call('ZREM', KEYS[2], session)
  if entry and key then
    if redis.call('HINCRBY', KEYS[3], key, -1) <= 0 then
      redis.call('HDEL', KEYS[3], key)
      leaves[#leaves + 1] = entry
    end
  end
end
if #leaves > 0 then
  redis.call('SPUBLISH', ARGV[2], 'p {"joins":[],"leaves":[' .. table.concat(leaves, ',') .. ']}')
end
return redis.call('HLEN', KEYS[3])`;

/** The live entries. KEYS: entries hash, expiries zset. ARGV: now. */
export const PRESENCE_LIST = `
local live = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')
local out = {}
for i = 1, #live, 1000 do
  local entries = redis.call('HMGET', KEYS[1], unpack(live, i, math.min(i + 999, #live)))
  for _, entry in ipairs(entries) do
    if entry then out[#out + 1] = entry end
  end
end
return out`;
