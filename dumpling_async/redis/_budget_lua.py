"""The shared credit budget's Lua scripts."""

from ._limiter_lua import NOW

__all__ = ["RESERVE", "SETTLE"]

# KEYS: spent, reservations. ARGV: member, cost, max, stale seconds, ttl ms, floor (the
# most this worker has seen spent). Returns {status, spent}: 1 reserved, 0 wait, -1 over
# budget, -2 Redis reported less than the floor (it lost its state) and was set back to it.
RESERVE = (
    NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[4]))
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[6])
if spent < floor then
  redis.call('SET', KEYS[1], floor)
  return {-2, spent}
end
local reserved = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  reserved = reserved + tonumber(string.match(m, '|(%d+)$'))
end
local cost, max = tonumber(ARGV[2]), tonumber(ARGV[3])
if spent + reserved + cost > max then
  if spent + cost > max or reserved == 0 then return {-1, spent} end
  return {0, spent}
end
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[5]))
return {1, spent}
"""
)

# KEYS: spent, reservations. ARGV: member, cost, charged (1/0). What was spent never
# expires: an eviction policy must not be able to hand the money back.
SETTLE = """
redis.call('ZREM', KEYS[2], ARGV[1])
if ARGV[3] == '1' then
  return redis.call('INCRBY', KEYS[1], tonumber(ARGV[2]))
end
return tonumber(redis.call('GET', KEYS[1]) or '0')
"""
