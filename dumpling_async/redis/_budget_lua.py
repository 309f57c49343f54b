"""The shared credit budget's Lua scripts."""

__all__ = ["RESERVE", "SETTLE"]

NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# KEYS: spent, reservations, epoch. ARGV: member, cost, max, stale seconds, ttl ms, the
# epoch this worker saw ('' for none), the most it saw spent, its own outstanding
# reservations, a fresh epoch. The epoch key (no TTL, like what was spent) tells a Redis
# that lost its state (restarted without persistence, evicted) from a new one.
# Returns {status, spent, epoch}: 1 reserved, 0 wait, -1 over budget, -2 the state was
# lost: what was spent is set back to the most any worker saw plus its reservations.
RESERVE = (
    NOW
    + """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch = redis.call('GET', KEYS[3])
local seen, high = ARGV[6], tonumber(ARGV[7])
if not epoch then
  epoch = ARGV[9]
  redis.call('SET', KEYS[3], epoch)
end
if (seen ~= '' and seen ~= epoch) or spent < high then
  local restored = math.max(spent, high) + tonumber(ARGV[8])
  redis.call('SET', KEYS[1], restored)
  return {-2, spent, epoch}
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[4]))
local reserved = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  reserved = reserved + tonumber(string.match(m, '|(%d+)$'))
end
local cost, max = tonumber(ARGV[2]), tonumber(ARGV[3])
if spent + reserved + cost > max then
  if spent + cost > max or reserved == 0 then return {-1, spent, epoch} end
  return {0, spent, epoch}
end
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[5]))
return {1, spent, epoch}
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
