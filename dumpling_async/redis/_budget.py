"""``RedisCreditBudget``: one credit budget shared by many workers through Redis."""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict, deque

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .._core.log import get_logger
from .._errors import BudgetExceededError
from ._base import Connection, RedisBacked, key_namespace
from ._budget_lua import RESERVE, SETTLE

__all__ = ["RedisCreditBudget"]


class RedisCreditBudget(RedisBacked):
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
        self._conn = Connection(redis)
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
        self._reserve = self._redis.register_script(RESERVE)
        self._settle = self._redis.register_script(SETTLE)
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
