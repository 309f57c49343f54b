"""``RedisRateLimiter``: the adaptive limiter with its state in Redis."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .._core.log import get_logger
from .._core.ratelimit import AdaptiveRateLimiter, Permit, ResponseInfo
from .._models import RateLimitState
from ._base import Connection, RedisBacked, key_namespace
from ._limiter_lua import ACQUIRE, SETTLE

__all__ = ["RedisRateLimiter"]


class RedisRateLimiter(RedisBacked):
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
        self._conn = Connection(redis)
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
        self._acquire = self._redis.register_script(ACQUIRE)
        self._settle = self._redis.register_script(SETTLE)
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
        task.add_done_callback(self._landed)

    def _landed(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.warning("redis_unavailable", component="rate_limiter")

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
