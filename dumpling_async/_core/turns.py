"""Two lanes to the quota: interactive requests (single calls, a web handler waiting)
ahead of bulk work (``gather_*``, ``iter_*``, listings), and a bound on the wait.

``Turns`` is the queue behind the in-process limiter: one caller at a time waits for
the quota model, interactive callers before bulk ones, each lane first come first
served. A bulk caller whose unit comes while an interactive caller waits hands its turn
over and waits again at the head of its lane: when both wait, the interactive request
takes the next unit. An idle interactive lane costs the bulk lane nothing.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

import attrs

from .._errors import ConfigurationError, MaxWaitExceededError

__all__ = [
    "BULK",
    "INTERACTIVE",
    "PRIORITIES",
    "Priority",
    "Turn",
    "Turns",
    "check_priority",
    "check_wait",
]

T = TypeVar("T")
Priority = Literal["interactive", "bulk"]
PRIORITIES: tuple[Priority, ...] = ("interactive", "bulk")  # the order lanes are served


@attrs.frozen
class Turn:
    """How a call waits for the quota: its lane, and how long it may wait (seconds; None:
    as long as it takes)."""

    priority: Priority = "interactive"
    max_wait: float | None = None


INTERACTIVE = Turn("interactive")
BULK = Turn("bulk")


class Turns:
    """Whose turn it is to wait for the quota: one holder, then the waiters by lane."""

    __slots__ = ("_held", "_lanes", "queued")

    def __init__(self) -> None:
        self._held = False
        self._lanes: dict[Priority, deque[asyncio.Future[None]]] = {p: deque() for p in PRIORITIES}
        self.queued: dict[Priority, int] = dict.fromkeys(PRIORITIES, 0)  # in run(), holder too

    def ahead(self, priority: Priority) -> int:
        """The callers in ``run`` that a new one of *priority* would go after."""
        interactive = self.queued["interactive"]
        return interactive + self.queued["bulk"] if priority == "bulk" else interactive

    async def run(
        self,
        priority: Priority,
        max_wait: float | None,
        attempt: Callable[[], Awaitable[T | None]],
        predicted: Callable[[], float],
    ) -> T:
        """*attempt*'s permit, asked in *priority*'s turn: None from it means it gave way
        to an interactive caller, and it is asked again at the head of its lane. Within
        *max_wait*: ``MaxWaitExceededError`` at once when *predicted* says longer, or
        when the wait runs out."""
        if max_wait is not None and max_wait < (wait := predicted()) < math.inf:
            raise MaxWaitExceededError(max_wait, wait)
        holding = False
        self.queued[priority] += 1
        try:
            async with asyncio.timeout(max_wait) as scope:
                await self.take(priority)
                holding = True
                while (permit := await attempt()) is None:
                    self.give()
                    holding = False
                    await self.take(priority, front=True)
                    holding = True
                return permit
        except TimeoutError:
            if max_wait is None or not scope.expired():
                raise
            wait = predicted()
            raise MaxWaitExceededError(max_wait, None if math.isinf(wait) else wait) from None
        finally:
            self.queued[priority] -= 1
            if holding:
                self.give()

    def waiting(self, priority: Priority) -> int:
        """Callers waiting for a turn in *priority*'s lane (not the holder)."""
        return len(self._lanes[priority])

    async def take(self, priority: Priority, *, front: bool = False) -> None:
        """Wait for the turn (at the head of the lane when *front*: a holder that gave
        way keeps its place)."""
        if not self._held:
            self._held = True
            return
        waiter = asyncio.get_running_loop().create_future()
        lane = self._lanes[priority]
        if front:
            lane.appendleft(waiter)
        else:
            lane.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed the turn as it gave up: pass it on
            elif waiter in lane:  # (give() drops a cancelled waiter it meets)
                lane.remove(waiter)
            raise

    def give(self) -> None:
        """End the holder's turn: the next waiter, interactive first, holds it."""
        for priority in PRIORITIES:
            lane = self._lanes[priority]
            while lane:
                waiter = lane.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._held = False


def check_wait(max_wait: float | None) -> float | None:
    """A ``max_wait`` as given, if it is one (> 0, ``math.inf``, or None)."""
    if max_wait is not None and (
        isinstance(max_wait, bool) or not isinstance(max_wait, int | float) or not max_wait > 0
    ):
        raise ConfigurationError("max_wait must be > 0 seconds (math.inf: no bound) or None")
    return max_wait


def check_priority(priority: str) -> Priority:
    """A ``priority`` as given, if it is one."""
    if priority not in PRIORITIES:
        raise ConfigurationError(f"priority must be one of {PRIORITIES}, not {priority!r}")
    return priority
