"""``RedisCreditBudget``: one credit budget shared by many workers through Redis.

What was spent is money: it has no TTL in Redis, and each worker remembers the most it
has seen spent, so a Redis that restarted or evicted the key (and now reports less) is
caught and set back instead of handing the budget out again. A reservation survives the
cancellation of its caller (it is given back), and a charge Redis could not record is
replayed once before anything else is reserved.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections import defaultdict, deque
from typing import Any

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
        self._keys.append(f"{space}:{name}:epoch")
        self._epoch = ""  # the Redis state this worker has seen (empty: none yet)
        self._max = max_credits
        self._stale = stale_after
        self._ttl_ms = int(idle_ttl * 1000)
        self._worker = f"{os.getpid()}-{os.urandom(4).hex()}"
        self._seq = 0
        self._mine: defaultdict[int, deque[str]] = defaultdict(deque)
        self._spent = 0  # the shared total, as last seen
        self._high = 0  # the most this worker has seen spent: Redis never goes below it
        self._unrecorded = 0  # charges Redis did not take; replayed before new reservations
        self._background: set[asyncio.Task[Any]] = set()
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

    def _seen(self, spent: int | str | bytes) -> int:
        self._spent = int(spent)
        self._high = max(self._high, self._spent)
        return self._spent

    async def reserve(self, cost: int) -> None:
        if self._unrecorded:
            await self._replay()
        self._seq += 1
        member = f"{self._worker}:{self._seq}|{cost}"
        ceiling = self._max if self._max is not None else 2**62
        failures = 0
        while True:
            # If Redis lost its state, what was spent is set back to the most we saw plus
            # our own reservations in flight (counted as spent: the safe side).
            outstanding = sum(price * len(held) for price, held in self._mine.items())
            args: list[str | int | float] = [member, cost, ceiling, self._stale]
            args += [self._ttl_ms, self._epoch, self._high, outstanding, os.urandom(8).hex()]
            call = asyncio.ensure_future(self._reserve(keys=self._keys, args=args))
            try:
                # Shielded: a reservation Redis granted after our caller was cancelled must
                # be given back, not left to hold credits for stale_after seconds.
                status, spent, epoch = await asyncio.shield(call)
            except asyncio.CancelledError:
                call.add_done_callback(functools.partial(self._orphaned, member, cost))
                raise
            except (RedisError, OSError) as exc:
                failures += 1
                if failures == 1:
                    # A restarted Redis closes our connection: asking again reconnects, and
                    # a reservation is idempotent (the same member).
                    continue
                self._log.warning("redis_unavailable", component="credit_budget")
                raise BudgetExceededError(
                    "shared credit budget unreachable (Redis unavailable); not attempted"
                ) from exc.with_traceback(None)
            self._epoch = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
            if int(status) == -2:
                raise self._lost(int(spent), max(int(spent), self._high) + outstanding)
            self._seen(spent)
            if int(status) == 1:
                self._mine[cost].append(member)
                return
            if int(status) < 0:
                raise BudgetExceededError(
                    f"shared credit budget reached: {self._spent} of {self._max} credits spent"
                )
            await asyncio.sleep(0.01)  # others hold reservations that may be given back

    def _lost(self, reported: int, restored: int) -> BudgetExceededError:
        self._log.error("redis_budget_lost", reported=reported, seen=self._high, restored=restored)
        error = BudgetExceededError(
            f"shared credit budget went back from {self._high} to {reported} credits spent "
            f"(Redis restarted or evicted it); set back to {restored}; not attempted"
        )
        self._high = max(self._high, restored)
        return error

    def _orphaned(self, member: str, cost: int, call: asyncio.Future[Any]) -> None:
        """A reservation granted after its caller was cancelled: give it back."""
        if call.cancelled() or call.exception() is not None or int(call.result()[0]) != 1:
            return
        task = asyncio.ensure_future(self._settle(keys=self._keys, args=[member, cost, "0"]))
        self._background.add(task)
        task.add_done_callback(self._landed)

    def _landed(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.warning("redis_unavailable", component="credit_budget")

    async def settle(self, cost: int, *, charged: bool) -> None:
        member = self._mine[cost].popleft()
        args: list[str | int] = [member, cost, "1" if charged else "0"]
        call = asyncio.ensure_future(self._settle(keys=self._keys, args=args))
        try:
            # Shielded: a charge is recorded even if our caller is cancelled meanwhile.
            self._seen(await asyncio.shield(call))
        except asyncio.CancelledError:
            call.add_done_callback(functools.partial(self._settled_late, cost if charged else 0))
            raise
        except (RedisError, OSError):
            self._unrecord(cost if charged else 0)

    def _settled_late(self, charged: int, call: asyncio.Future[Any]) -> None:
        if call.cancelled() or call.exception() is not None:
            self._unrecord(charged)
        else:
            self._seen(call.result())

    def _unrecord(self, charged: int) -> None:
        self._log.warning("redis_unavailable", component="credit_budget", charged=charged)
        # Spent but not recorded: no new reservation until it is (fail closed).
        self._unrecorded += charged

    async def _replay(self) -> None:
        # Taken before the await: concurrent reservations must not replay it again.
        amount, self._unrecorded = self._unrecorded, 0
        try:
            self._seen(await self._settle(keys=self._keys, args=["", amount, "1"]))
        except (RedisError, OSError) as exc:
            self._unrecorded += amount
            raise BudgetExceededError(
                "shared credit budget unreachable (Redis unavailable); not attempted"
            ) from exc.with_traceback(None)
