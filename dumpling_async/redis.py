"""One quota and one credit budget shared by many processes, through Redis.

``RedisRateLimiter`` runs the adaptive limiter's model (a log of send times re-synced
from ``X-RateLimit-Remaining``, probes for predicted quota, pause-all on 429) as Lua
scripts, so every worker on one API key sees one state, updated atomically. Keys are
derived from a hash of the API key, never the key itself, and expire when idle, so a
crashed worker leaves nothing stuck: its in-flight entries and probe lapse after
``stale_after`` seconds, and a grant that arrives after its waiter was cancelled is
handed straight back.

If Redis becomes unreachable mid-run, the limiter logs ``redis_unavailable`` and falls
back to a local :class:`AdaptiveRateLimiter` (which still re-syncs from the server's
headers, so it stays conservative); the credit budget fails closed: lookups that cannot
reserve credits end as :class:`BudgetExceededError` results, never as lost handles.
Install with ``pip install 'dumpling-async[redis]'``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import time
from collections import defaultdict, deque
from typing import Any, Self

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ._core.log import get_logger
from ._core.ratelimit import AdaptiveRateLimiter, Permit, ResponseInfo
from ._errors import BudgetExceededError
from ._models import RateLimitState

__all__ = ["RedisCreditBudget", "RedisRateLimiter", "key_namespace"]

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# KEYS: log, inflight, state, probe. ARGV: member, window guess, ttl ms, stale seconds,
# latency (the caller's send-to-answer average: the server counts from arrival).
_ACQUIRE = (
    _NOW
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
_SETTLE = (
    _NOW
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

# KEYS: spent, reservations. ARGV: member, cost, max, stale seconds, ttl ms.
_RESERVE = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[4]))
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
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

# KEYS: spent, reservations. ARGV: member, cost, charged (1/0), ttl ms.
_SETTLE_CREDITS = """
redis.call('ZREM', KEYS[2], ARGV[1])
if ARGV[3] == '1' then
  local spent = redis.call('INCRBY', KEYS[1], tonumber(ARGV[2]))
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
  return spent
end
return tonumber(redis.call('GET', KEYS[1]) or '0')
"""


def key_namespace(api_key: str, prefix: str = "dumpling") -> str:
    """The Redis key prefix for one API key: a hash of it, never the key itself."""
    digest = hashlib.sha256(b"dumpling-async:" + api_key.encode()).hexdigest()[:24]
    return f"{prefix}:{digest}"


class _Connection:
    """A Redis client made from a URL (and then closed by us) or lent by the caller."""

    def __init__(self, redis: str | aioredis.Redis) -> None:
        self.owned = isinstance(redis, str)
        self.client = aioredis.Redis.from_url(redis) if isinstance(redis, str) else redis

    async def aclose(self) -> None:
        if self.owned:
            await self.client.aclose()


class _RedisBacked:
    """What both Redis-backed objects share: their keys and their connection."""

    _conn: _Connection
    _keys: list[str]

    @property
    def keys(self) -> list[str]:
        """The Redis keys this object uses (all under a hash of the API key)."""
        return list(self._keys)

    async def aclose(self) -> None:
        """Close the Redis connection if it was made from a URL."""
        await self._conn.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class RedisRateLimiter(_RedisBacked):
    """The adaptive limiter with its state in Redis, shared by every worker on one key.

    *redis* is a URL or a ``redis.asyncio.Redis``; *api_key* only names the keys (hashed).
    ``stale_after`` should exceed the client's per-attempt timeout.
    """

    def __init__(
        self,
        redis: str | aioredis.Redis,
        *,
        api_key: str,
        window: float = 0.25,
        stale_after: float = 120.0,
        idle_ttl: float = 600.0,
        upstream_pause: float = 0.5,
        max_pause: float = 60.0,
        poll_interval: float = 0.005,
        prefix: str = "dumpling",
    ) -> None:
        self._conn = _Connection(redis)
        self._redis = self._conn.client
        space = key_namespace(api_key, prefix)
        self._keys = [f"{space}:log", f"{space}:inflight", f"{space}:state", f"{space}:probe"]
        self._guess = window
        self._stale = stale_after
        self._ttl_ms = int(idle_ttl * 1000)
        self._upstream_pause = upstream_pause
        self._max_pause = max_pause
        self._poll = poll_interval
        self._worker = f"{os.getpid()}-{os.urandom(4).hex()}"
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._settle = self._redis.register_script(_SETTLE)
        self._seq = 0
        self._in_flight = 0
        self._latency = 0.0  # moving average of send-to-answer time
        self._throttled = 0.0
        self._waits = 0
        self._state = RateLimitState()
        self._fallback: AdaptiveRateLimiter | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._lock: asyncio.Lock | None = None
        self._log = get_logger()

    def __repr__(self) -> str:
        return f"RedisRateLimiter(keys={self._keys[2]!r}, fallback={self._fallback is not None})"

    def snapshot(self) -> RateLimitState:
        if self._fallback is not None:
            return self._fallback.snapshot()
        return RateLimitState(
            limit=self._state.limit,
            remaining=self._state.remaining,
            window=self._state.window,
            refill_rate=self._state.refill_rate,
            in_flight=self._in_flight,
            throttled_seconds=self._throttled,
            throttle_waits=self._waits,
            rate_limited=self._state.rate_limited,
        )

    def _fall_back(self, exc: BaseException) -> AdaptiveRateLimiter:
        if self._fallback is None:
            self._log.warning("redis_unavailable", fallback="local", error=repr(exc)[:200])
            self._fallback = AdaptiveRateLimiter(window=self._state.window or self._guess)
        return self._fallback

    async def _local_acquire(self, fallback: AdaptiveRateLimiter) -> Permit:
        permit = await fallback.acquire()
        return Permit(-permit.seq, permit.sent_at)  # negative: settled by the fallback

    async def acquire(self) -> Permit:
        if self._fallback is not None:
            return await self._local_acquire(self._fallback)
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one poller per process; the others queue here in order
            started = time.monotonic()
            waited = False
            while True:
                self._seq += 1
                member = f"{self._worker}:{self._seq}"
                call = asyncio.ensure_future(
                    self._acquire(
                        keys=self._keys,
                        args=[member, self._guess, self._ttl_ms, self._stale, self._latency],
                    )
                )
                try:
                    # Shielded: if we are cancelled after Redis granted, the grant must
                    # still be given back, or every worker waits for the probe to lapse.
                    granted, value = await asyncio.shield(call)
                except asyncio.CancelledError:
                    call.add_done_callback(functools.partial(self._orphaned, member))
                    raise
                except (RedisError, OSError) as exc:
                    return await self._local_acquire(self._fall_back(exc))
                if int(granted) == 1:
                    break
                if not waited:
                    waited = True
                    self._waits += 1
                    self._log.debug("throttle", shared=True, wait=float(value))
                wait = float(value)
                # A probe is out somewhere (wait < 0): its answer may free quota any
                # moment, so look again soon; otherwise sleep until the predicted time.
                await asyncio.sleep(self._poll if wait < 0 else min(wait, 10 * self._poll))
            if waited:
                self._throttled += time.monotonic() - started
            self._in_flight += 1
            return Permit(self._seq, time.monotonic())

    def _orphaned(self, member: str, call: asyncio.Future[Any]) -> None:
        """A grant that arrived after its waiter was cancelled: hand it straight back."""
        if call.cancelled() or call.exception() is not None or int(call.result()[0]) != 1:
            return
        args: list[Any] = [member, 0, "", "", "", self._guess, self._ttl_ms]
        args += [self._upstream_pause, self._max_pause]
        task = asyncio.ensure_future(self._settle(keys=self._keys, args=args))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self, permit: Permit, response: ResponseInfo | None) -> None:
        if permit.seq < 0:
            assert self._fallback is not None
            await self._fallback.settle(Permit(-permit.seq, permit.sent_at), response)
            return
        self._in_flight -= 1
        if self._fallback is not None:
            return  # granted by Redis before it went away; nothing to tell it now
        if response is not None:
            self._latency += 0.2 * (time.monotonic() - permit.sent_at - self._latency)
        r = response
        args: list[Any] = [
            f"{self._worker}:{permit.seq}",
            r.status if r else 0,
            "" if r is None or r.limit is None else r.limit,
            "" if r is None or r.remaining is None else r.remaining,
            "" if r is None or r.retry_after is None else r.retry_after,
            self._guess,
            self._ttl_ms,
            self._upstream_pause,
            self._max_pause,
        ]
        try:
            limit, remaining, window, learned, limited = await asyncio.shield(
                self._settle(keys=self._keys, args=args)
            )
        except (RedisError, OSError) as exc:
            self._fall_back(exc)
            return
        lim = int(limit) if limit else None
        win = float(window) if window and learned else None
        self._state = RateLimitState(
            limit=lim,
            remaining=int(remaining) if remaining else None,
            window=win,
            refill_rate=lim / win if lim and win else None,
            rate_limited=int(limited),
        )


class RedisCreditBudget(_RedisBacked):
    """A credit budget shared through Redis: many workers together never exceed it."""

    def __init__(
        self,
        redis: str | aioredis.Redis,
        *,
        api_key: str,
        max_credits: int | None,
        stale_after: float = 3600.0,
        idle_ttl: float = 7 * 24 * 3600.0,
        prefix: str = "dumpling",
        name: str = "budget",
    ) -> None:
        self._conn = _Connection(redis)
        self._redis = self._conn.client
        space = key_namespace(api_key, prefix)
        self._keys = [f"{space}:{name}:spent", f"{space}:{name}:reserved"]
        self._max = max_credits
        self._stale = stale_after
        self._ttl_ms = int(idle_ttl * 1000)
        self._worker = f"{os.getpid()}-{os.urandom(4).hex()}"
        self._seq = 0
        self._mine: defaultdict[int, deque[str]] = defaultdict(deque)
        self._spent = 0  # the shared total, as last seen
        self._unrecorded = 0  # charges Redis did not take; replayed before new reservations
        self._reserve = self._redis.register_script(_RESERVE)
        self._settle = self._redis.register_script(_SETTLE_CREDITS)
        self._log = get_logger()

    def __repr__(self) -> str:
        return f"RedisCreditBudget(max_credits={self._max}, spent={self._spent})"

    @property
    def spent(self) -> int:
        """Credits charged by all workers together, as last seen."""
        return self._spent

    @property
    def max_credits(self) -> int | None:
        return self._max

    async def reserve(self, cost: int) -> None:
        if self._unrecorded:
            await self._replay()
        self._seq += 1
        member = f"{self._worker}:{self._seq}|{cost}"
        ceiling = self._max if self._max is not None else 2**62
        while True:
            try:
                status, spent = await self._reserve(
                    keys=self._keys, args=[member, cost, ceiling, self._stale, self._ttl_ms]
                )
            except (RedisError, OSError) as exc:
                self._log.warning("redis_unavailable", component="credit_budget")
                raise BudgetExceededError(
                    "shared credit budget unreachable (Redis unavailable); not attempted"
                ) from exc.with_traceback(None)
            self._spent = int(spent)
            if int(status) == 1:
                self._mine[cost].append(member)
                return
            if int(status) < 0:
                raise BudgetExceededError(
                    f"shared credit budget reached: {self._spent} of {self._max} credits spent"
                )
            await asyncio.sleep(0.01)  # others hold reservations that may be given back

    async def settle(self, cost: int, *, charged: bool) -> None:
        member = self._mine[cost].popleft()
        try:
            self._spent = int(
                await self._settle(
                    keys=self._keys, args=[member, cost, "1" if charged else "0", self._ttl_ms]
                )
            )
        except (RedisError, OSError):
            self._log.warning("redis_unavailable", component="credit_budget", charged=charged)
            if charged:
                # Spent but not recorded: no new reservation until it is (fail closed).
                self._unrecorded += cost

    async def _replay(self) -> None:
        try:
            self._spent = int(
                await self._settle(keys=self._keys, args=["", self._unrecorded, "1", self._ttl_ms])
            )
        except (RedisError, OSError) as exc:
            raise BudgetExceededError(
                "shared credit budget unreachable (Redis unavailable); not attempted"
            ) from exc.with_traceback(None)
        self._unrecorded = 0
