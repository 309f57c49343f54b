"""Rate limiting driven by the server's own rate-limit headers.

``AdaptiveRateLimiter`` is the in-process limiter every client uses unless given another:
the quota model (``quota.QuotaModel``, pure and clock-driven) decides when a request may
go; this module only makes coroutines wait for it, fairly and cheaply. A request that
may go at once takes no lock; the others queue (``turns.Turns``: interactive requests
first) and wake on each answer or when the model's predicted time comes.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import attrs
from aiolimiter import AsyncLimiter

from .._models import RateLimitState
from .headers import parse_rate_limit_headers
from .log import get_logger
from .quota import QuotaModel, ResponseInfo
from .turns import Priority, Turns

__all__ = [
    "AdaptiveRateLimiter",
    "HearsDepartures",
    "Permit",
    "RateLimiter",
    "ResponseInfo",
    "TakesTurns",
    "parse_rate_limit_headers",
]


@attrs.frozen
class Permit:
    """One granted request slot; hand it back to ``settle``."""

    seq: int
    sent_at: float


@runtime_checkable
class RateLimiter(Protocol):
    """A limiter shared by every request on one API key."""

    async def acquire(self) -> Permit:
        """Wait until a request may be sent and return its permit."""
        ...

    async def settle(self, permit: Permit, response: ResponseInfo | None) -> None:
        """Report how the permitted request ended: its response, None when it was sent
        and no answer came, or a ``ResponseInfo`` with status 0 when it was never sent."""
        ...

    def snapshot(self) -> RateLimitState:
        """The limit as last seen and what was learned of it."""
        ...


@runtime_checkable
class HearsDepartures(Protocol):
    """A limiter that wants to hear when a permitted request actually leaves: on a
    connection still being opened that is well after its permit, and requests granted
    after it may reach the server first."""

    def departed(self, permit: Permit) -> None:
        """The permitted request leaves now (called synchronously, from the transport)."""
        ...


@runtime_checkable
class TakesTurns(Protocol):
    """A limiter that serves interactive requests first and can bound a wait."""

    def predicted_wait(self, priority: Priority = "interactive") -> float:
        """How long a request of *priority* asked now would wait (``math.inf``: the
        limiter cannot say before answers arrive)."""
        ...

    async def acquire(
        self, *, priority: Priority = "interactive", max_wait: float | None = None
    ) -> Permit:
        """A permit, in *priority*'s lane; ``MaxWaitExceededError`` rather than a wait
        longer than *max_wait*."""
        ...


class AdaptiveRateLimiter:
    """The default limiter: throttles before the quota runs out, whatever the server's
    algorithm or window.

    ``window`` is a guess (seconds) for how long a request counts against the quota,
    tried by one request before it is relied on, and replaced by what answers show;
    without one, the limiter learns it. ``max_rate`` per ``time_period`` optionally adds a
    fixed client-side ceiling (an aiolimiter bucket), useful when a plan's rate is known
    or a server sends no rate-limit headers. ``upstream_pause`` is how long everyone
    waits after a 503 without ``Retry-After``; ``max_pause`` caps any pause (a longer
    ``Retry-After`` is left to the retry policy, which then returns the error).
    """

    def __init__(
        self,
        *,
        window: float | None = None,
        max_rate: float | None = None,
        time_period: float = 1.0,
        upstream_pause: float = 0.5,
        max_pause: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window is not None and not window > 0:
            raise ValueError("window must be > 0 (or None: learned)")
        self._model = QuotaModel(window=window, upstream_pause=upstream_pause, max_pause=max_pause)
        self._clock = clock
        self._ceiling = AsyncLimiter(max_rate, time_period) if max_rate else None
        self._throttled = 0.0
        self._throttle_waits = 0
        self._turns = Turns()  # the slow path's queue, interactive first
        self._changed: asyncio.Event | None = None
        self._log = get_logger()

    def __repr__(self) -> str:
        model = self._model
        return (
            f"AdaptiveRateLimiter(state={model.mode.value}, limit={model.limit}, "
            f"window={model.window:.3f}, in_flight={model.in_flight})"
        )

    @property
    def window(self) -> float:
        """The current estimate of how long a request counts against the quota."""
        return self._model.window

    def snapshot(self) -> RateLimitState:
        model = self._model
        learned = model.window if model.learned else None
        rate = model.refill_rate()
        return RateLimitState(
            limit=model.limit,
            remaining=model.remaining,
            window=learned,
            refill_rate=rate if model.learned else None,
            in_flight=model.in_flight,
            throttled_seconds=self._throttled,
            throttle_waits=self._throttle_waits,
            rate_limited=model.rate_limited,
            state=model.mode.value,
        )

    # -- the protocol --------------------------------------------------------------------
    def predicted_wait(self, priority: Priority = "interactive") -> float:
        """How long a request of *priority* asked now would wait for its permit, as the
        quota model predicts it (``math.inf``: not before answers arrive)."""
        return self._model.wait(self._clock(), self._turns.ahead(priority) + 1)

    async def acquire(
        self, *, priority: Priority = "interactive", max_wait: float | None = None
    ) -> Permit:
        model = self._model
        if self._ceiling is None:
            now = self._clock()
            # The common case: no lock, no event, no task. Ahead of queued coroutines only
            # when there is room for them all too: going first then takes nothing of theirs,
            # and a queue that formed while the limit was learned drains instead of
            # holding every later request in line behind the lock.
            ahead = self._turns.ahead(priority)
            if model.wait(now) <= 0 and (not ahead or model.spare() > ahead):
                return Permit(model.grant(now), now)
        if self._changed is None:
            self._changed = asyncio.Event()
        # An interactive request that comes while a bulk one waits takes the next unit.
        attempt = functools.partial(self._wait_for_turn, priority)
        predicted = functools.partial(self.predicted_wait, priority)
        return await self._turns.run(priority, max_wait, attempt, predicted)

    async def _wait_for_turn(self, priority: Priority) -> Permit | None:
        """The permit, once the model lets one go; None when a bulk request must give
        way to an interactive one that is waiting."""
        model, changed, turns = self._model, self._changed, self._turns
        assert changed is not None
        started = self._clock()
        waited = False
        while True:
            now = self._clock()
            wait = model.wait(now)
            if wait <= 0 and priority == "bulk" and turns.waiting("interactive"):
                return None
            if wait <= 0:
                break
            if not waited:
                waited = True
                self._throttle_waits += 1
                self._log.debug(
                    "throttle",
                    wait=None if math.isinf(wait) else round(wait, 4),
                    limit=model.limit,
                    remaining=model.remaining,
                    in_flight=model.in_flight,
                    paused=now < model.paused_until,
                )
            changed.clear()
            try:
                async with asyncio.timeout(None if math.isinf(wait) else wait):
                    await changed.wait()
            except TimeoutError:
                pass
        if self._ceiling is not None:
            await self._ceiling.acquire()
        now = self._clock()
        if waited:
            self._throttled += now - started
        return Permit(model.grant(now), now)

    def departed(self, permit: Permit) -> None:
        self._model.left(permit.seq, self._clock())

    async def settle(self, permit: Permit, response: ResponseInfo | None) -> None:
        model = self._model
        now = self._clock()
        if response is not None and response.status == 0:
            model.cancel(permit.seq)  # never sent: it used nothing
        else:
            paused, limit = model.paused_until, model.limit
            model.answer(permit.seq, now, response)
            if limit is not None and model.limit != limit:
                self._log.info("rate_limit_changed", old=limit, new=model.limit)
            if model.paused_until > paused:
                self._log.info(
                    "pause",
                    status=response.status if response else None,
                    seconds=round(model.paused_until - now, 4),
                )
        if self._changed is not None:
            self._changed.set()
