"""The shared limiter's Lua scripts: each runs atomically in Redis, so every worker on
one key sees one state."""

__all__ = ["ACQUIRE", "NOW", "SETTLE"]

NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# KEYS: log, inflight, state, probe. ARGV: member, window guess, ttl ms, stale seconds,
# latency (the caller's send-to-answer average: the server counts from arrival).
ACQUIRE = (
    NOW
    + """
local ttl = tonumber(ARGV[3])
local stale = tonumber(ARGV[4])
local st = redis.call('HMGET', KEYS[3], 'limit', 'window', 'paused', 'answered', 'headers')
local limit = tonumber(st[1])
local window = tonumber(st[2]) or tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - stale)
local paused = tonumber(st[3]) or 0
if now < paused then return {0, tostring(paused - now)} end
local function grant(probe)
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  redis.call('ZADD', KEYS[2], now, ARGV[1])
  if probe then redis.call('SET', KEYS[4], ARGV[1], 'PX', math.floor(stale * 1000)) end
  for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl) end
  return {1, tostring(now)}
end
if not limit then
  if st[4] == '1' and st[5] ~= '1' then return grant(false) end
  if redis.call('EXISTS', KEYS[4]) == 1 then return {0, '-1'} end
  return grant(true)
end
local live = redis.call('ZCARD', KEYS[1])
local excess = live - limit
if excess < 0 then return grant(false) end
if redis.call('EXISTS', KEYS[4]) == 1 then return {0, '-1'} end
local latency = tonumber(ARGV[5]) or 0
local due = redis.call('ZCOUNT', KEYS[1], '-inf', now - window - latency)
if due > excess then return grant(true) end
local e = redis.call('ZRANGE', KEYS[1], excess, excess, 'WITHSCORES')
return {0, tostring(tonumber(e[2]) + window + latency - now)}
"""
)

# KEYS: log, inflight, state, probe. ARGV: member, status, limit, remaining, retry_after,
# window guess, ttl ms, upstream pause, max pause. Empty strings stand for "absent".
SETTLE = (
    NOW
    + """
local member = ARGV[1]
local status = tonumber(ARGV[2])
local sent = tonumber(redis.call('ZSCORE', KEYS[2], member))
redis.call('ZREM', KEYS[2], member)
local probe = redis.call('GET', KEYS[4]) == member
if probe then redis.call('DEL', KEYS[4]) end
local window = tonumber(redis.call('HGET', KEYS[3], 'window')) or tonumber(ARGV[6])
if status > 0 then
  redis.call('HSET', KEYS[3], 'answered', '1')
  if probe and status ~= 429 then
    local last = tonumber(redis.call('HGET', KEYS[3], 'decayed')) or now
    window = window * math.max(0.9, 1 - 0.01 * (now - last) / window)
    redis.call('HSET', KEYS[3], 'decayed', tostring(now))
  end
  local limit = tonumber(ARGV[3])
  local remaining = tonumber(ARGV[4])
  if limit and remaining then
    redis.call('HSET', KEYS[3], 'headers', '1')
    local old = tonumber(redis.call('HGET', KEYS[3], 'limit'))
    local shrunk = redis.call('HGET', KEYS[3], 'shrunk') == '1'
    if old and limit < old then shrunk = true end
    redis.call('HSET', KEYS[3], 'limit', limit)
    local synced = tonumber(redis.call('HGET', KEYS[3], 'synced')) or 0
    local newest = sent ~= nil and sent >= synced
    if newest then redis.call('HSET', KEYS[3], 'synced', tostring(sent), 'remaining', remaining) end
    if remaining > 0 then shrunk = false end
    redis.call('HSET', KEYS[3], 'shrunk', shrunk and '1' or '0')
    local counted = redis.call('ZCARD', KEYS[1]) - redis.call('ZCARD', KEYS[2])
    local used = limit - remaining
    if counted > used and newest and not shrunk then
      redis.call('ZPOPMIN', KEYS[1], counted - used)
    elseif counted < used then
      local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
      local stamp = first[2] or tostring(now)
      for i = 1, used - counted do
        redis.call('ZADD', KEYS[1], stamp, 'pad:' .. redis.call('HINCRBY', KEYS[3], 'pads', 1))
      end
    end
  end
  local ra = tonumber(ARGV[5])
  local pause = nil
  if status == 429 and (tonumber(ARGV[4]) or 0) > 0 then
    -- quota left, yet 429: not the quota speaking; wait, learn nothing
    redis.call('HINCRBY', KEYS[3], 'limited', 1)
    pause = ra or tonumber(ARGV[8])
  elseif status == 429 then
    redis.call('HINCRBY', KEYS[3], 'limited', 1)
    local last429 = tonumber(redis.call('HGET', KEYS[3], 'last429')) or -1e18
    if ra then
      -- the oldest logged request: with many workers' requests in flight in one log,
      -- measuring from it (not from the local limiter's pivot) measured better
      local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
      if first[2] then
        local w = math.max(now + ra - tonumber(first[2]), 0.001) * 1.03
        if now - last429 < window then w = math.max(w, window * 1.5) end
        window = w
        redis.call('HSET', KEYS[3], 'learned', '1')
      end
    else
      ra = window
      window = window * 2
    end
    redis.call('HSET', KEYS[3], 'last429', tostring(now), 'decayed', tostring(now))
    pause = ra
  elseif status == 503 then
    pause = ra or tonumber(ARGV[8])
  end
  if pause then
    pause = math.min(pause, tonumber(ARGV[9]))
    local paused = tonumber(redis.call('HGET', KEYS[3], 'paused')) or 0
    if now + pause > paused then redis.call('HSET', KEYS[3], 'paused', tostring(now + pause)) end
  end
  redis.call('HSET', KEYS[3], 'window', tostring(window))
end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[7])) end
local s = redis.call('HMGET', KEYS[3], 'limit', 'remaining', 'window', 'learned', 'limited')
return {s[1] or '', s[2] or '', s[3] or '', s[4] or '', s[5] or '0'}
"""
)
