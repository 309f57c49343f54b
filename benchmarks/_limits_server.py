"""A rate-limited API built on the third-party ``limits`` package, for the benchmarks.

It serves ``POST /api/v1/get-tiktok-profile`` with the fake server's JSON
(``dumpling_async.testing.fake_profile``), limited per bearer key by one of the ``limits``
strategies on in-memory storage, the way a web app with Flask-Limiter or SlowAPI does:

* ``fixed``: ``FixedWindowRateLimiter`` (a window starting at the key's first hit);
* ``moving``: ``MovingWindowRateLimiter`` (a sliding log);
* ``sliding_counter``: ``SlidingWindowCounterRateLimiter`` (windows aligned to multiples
  of the window length in Unix time, the previous one weighted).

Every answer has ``X-RateLimit-Limit`` and ``X-RateLimit-Remaining`` from the strategy's
own ``get_window_stats``; a refused request gets 429 and ``Retry-After``: the seconds
until the stats' ``reset_time``, rounded up to a whole second (at least 1), as real ones
send it. With ``latency`` (an ``AnswerTime``) an allowed request is answered that long
after its hit was counted, drawn from ``random.Random(latency_seed)``, as a slow API
behind a rate-limiting middleware answers; a 429 comes from the middleware at once.
``LimitsServer`` offers what ``benchmarks._server`` reads of a
``FakeDumplingServer``; it runs in its own process through ``ServerProcess(...,
backend="limits-<strategy>")``.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)

from dumpling_async.testing import RateLimitRule, fake_profile

__all__ = ["STRATEGIES", "LimitsServer"]

PROFILE_PATH = "/api/v1/get-tiktok-profile"
STRATEGIES: dict[str, type[RateLimiter]] = {
    "fixed": FixedWindowRateLimiter,
    "moving": MovingWindowRateLimiter,
    "sliding_counter": SlidingWindowCounterRateLimiter,
}


class _Seconds(RateLimitItemPerSecond):
    """``amount`` per ``seconds`` seconds, a fraction allowed (``limits`` items count
    whole seconds; its in-memory storage works with any float)."""

    __slots__ = ("seconds",)

    def __init__(self, amount: int, seconds: float) -> None:
        super().__init__(amount, 1)
        self.seconds = seconds

    def get_expiry(self) -> int:
        return self.seconds  # type: ignore[return-value]  # a float, which storage accepts


class AnswerTimes(Protocol):
    """What is read of ``dumpling_async.testing.AnswerTime``."""

    def sample(self, rng: random.Random) -> float: ...


@dataclass(frozen=True)
class Record:
    """One request: when (``time.monotonic()``) and its status."""

    at: float
    status: int


class LimitsServer:
    """The ``limits``-backed API on *host*:*port* (0: any free port)."""

    def __init__(
        self,
        rule: RateLimitRule,
        strategy: str,
        *,
        host: str,
        port: int,
        latency: AnswerTimes | None = None,
        latency_seed: int | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}")
        self.rate_limit = rule
        self.strategy = strategy
        whole = float(rule.window).is_integer()
        self._item: RateLimitItemPerSecond = (
            RateLimitItemPerSecond(rule.limit, int(rule.window))
            if whole
            else _Seconds(rule.limit, rule.window)
        )
        self._storage = MemoryStorage()
        self._limiter = STRATEGIES[strategy](self._storage)
        self.records: list[Record] = []
        self.charged: Counter[str] = Counter()
        self.rate_limited = 0
        self.credits_charged = 0
        self.max_in_flight = 0
        self.first_request_wall: float | None = None  # time.time() of the first request
        self._in_flight = 0
        self._latency = latency
        self._rng = random.Random(latency_seed)
        self._host, self._port = host, port
        self._server: TestServer | None = None

    @property
    def requests(self) -> int:
        return len(self.records)

    def statuses(self) -> Counter[int]:
        return Counter(r.status for r in self.records)

    def set_rate_limit(self, limit: int) -> None:
        raise ValueError("the limits server keeps its limit")

    @property
    def url(self) -> str:
        assert self._server is not None, "start the server first"
        return str(self._server.make_url("")).rstrip("/")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(PROFILE_PATH, self._handle)
        self._server = TestServer(app, host=self._host, port=self._port)
        await self._server.start_server()

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()
            self._server = None
        self._storage.timer.cancel()

    def _answer(self, status: int, body: Any, headers: dict[str, str]) -> web.Response:
        self.records.append(Record(time.monotonic(), status))
        return web.Response(
            status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
        )

    async def _handle(self, request: web.Request) -> web.Response:
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            return await self._serve(request)
        finally:
            self._in_flight -= 1

    async def _serve(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        key = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else ""
        if not key:
            return self._answer(401, {"error": "API key is invalid or missing."}, {})
        if self.first_request_wall is None:
            self.first_request_wall = time.time()
        allowed = self._limiter.hit(self._item, key)
        stats = self._limiter.get_window_stats(self._item, key)
        headers = {
            "X-RateLimit-Limit": str(self._item.amount),
            "X-RateLimit-Remaining": str(max(0, stats.remaining)),
        }
        if not allowed:
            self.rate_limited += 1
            headers["Retry-After"] = str(max(1, math.ceil(stats.reset_time - time.time())))
            return self._answer(429, {"error": "Too many requests."}, headers)
        try:
            handle = orjson.loads(await request.read()).get("handle")
        except (orjson.JSONDecodeError, AttributeError):
            handle = None
        if not isinstance(handle, str) or not handle:
            return self._answer(400, {"error": "'handle' is required."}, headers)
        seconds = self._latency.sample(self._rng) if self._latency is not None else 0.0
        if seconds > 0:
            await asyncio.sleep(seconds)
        self.charged[handle] += 1
        self.credits_charged += 10
        return self._answer(200, fake_profile(handle), headers)
