"""Rate limiting driven by the server's own ``X-RateLimit-*`` headers.

The vendor says how many requests remain but not when used ones count again. The
adaptive limiter therefore keeps a log of its own requests' send times and models the
server as "a request counts for ``window`` seconds" (a sliding log). That model is exact
for sliding windows and conservative for fixed windows and token buckets, so one
strategy fits all three. Every response re-syncs the log with ``Remaining``; the window
is learned from ``Retry-After`` on a 429 (the server then says exactly when the request
whose expiry makes room stops counting) and drifts down slowly while no 429 comes, so
a guess that is too long is corrected too.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import statistics
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

import attrs
from aiolimiter import AsyncLimiter

from .._models import RateLimitState
from .log import get_logger

__all__ = [
    "AdaptiveRateLimiter",
    "Permit",
    "RateLimiter",
    "ResponseInfo",
    "parse_rate_limit_headers",
]


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if number >= 0 else None


def parse_rate_limit_headers(headers: Mapping[str, str]) -> tuple[int | None, int | None]:
    """Return (limit, remaining) from ``X-RateLimit-Limit`` / ``X-RateLimit-Remaining``."""
    return _header_int(headers, "x-ratelimit-limit"), _header_int(headers, "x-ratelimit-remaining")


@attrs.frozen
class Permit:
    """One granted request slot; hand it back to ``settle``."""

    seq: int
    sent_at: float


@attrs.frozen(kw_only=True)
class ResponseInfo:
    """What the limiter needs to know of a response."""

    status: int
    limit: int | None
    remaining: int | None
    retry_after: float | None = None


@runtime_checkable
class RateLimiter(Protocol):
    """A limiter shared by every request on one API key."""

    async def acquire(self) -> Permit:
        """Wait until a request may be sent and return its permit."""
        ...

    async def settle(self, permit: Permit, response: ResponseInfo | None) -> None:
        """Report how the permitted request ended (None: no response arrived)."""
        ...

    def snapshot(self) -> RateLimitState:
        """The limit as last seen and what was learned of it."""
        ...


class AdaptiveRateLimiter:
    """The default limiter: throttles before the quota runs out, whatever the server's
    algorithm or window.

    ``window`` is a first guess (seconds) for how long a request counts against the
    quota; observation replaces it. ``max_rate`` per ``time_period`` optionally adds a
    fixed client-side ceiling (an aiolimiter bucket), useful when a plan's rate is known
    or a server sends no rate-limit headers. ``upstream_pause`` is how long everyone
    waits after a 503 without ``Retry-After``; ``max_pause`` caps any pause (a longer
    ``Retry-After`` is left to the retry policy, which then returns the error).
    """

    def __init__(
        self,
        *,
        window: float = 0.25,
        max_rate: float | None = None,
        time_period: float = 1.0,
        upstream_pause: float = 0.5,
        max_pause: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window <= 0:
            raise ValueError("window must be > 0")
        self._upstream_pause = upstream_pause
        self._max_pause = max_pause
        self._clock = clock
        self._ceiling = AsyncLimiter(max_rate, time_period) if max_rate else None
        self._limit: int | None = None
        self._remaining: int | None = None
        self._headers_seen = False
        self._shrunk = False  # the limit dropped and no positive remaining seen since
        self._answered = False  # any response at all: before it, one probe at a time
        self._answered_at = 0.0
        # The slowest send-to-answer times of the last two windows, as (answered, seconds)
        # with seconds decreasing: a request counts from when the server got it, which
        # for one queued in a burst is well after it was sent.
        self._latencies: deque[tuple[float, float]] = deque()
        # Send times of requests believed to count against the quota, oldest first.
        self._times: list[float] = []
        self._head = 0
        self._seq = 0
        self._sync_seq = 0
        self._in_flight = 0
        self._probe_seq = 0  # the permit testing predicted quota, if one is out
        self._window = window
        self._learned = False
        self._decayed_at = 0.0
        self._last_429 = -math.inf
        self._exacts: deque[float] = deque(maxlen=8)  # recent Retry-After measurements
        self._paused_until = 0.0
        self._throttled = 0.0
        self._throttle_waits = 0
        self._rate_limited = 0
        self._lock: asyncio.Lock | None = None
        self._changed: asyncio.Event | None = None
        self._log = get_logger()

    def __repr__(self) -> str:
        return (
            f"AdaptiveRateLimiter(limit={self._limit}, window={self.window:.3f}, "
            f"in_flight={self._in_flight})"
        )

    # -- what was learned ------------------------------------------------------------
    @property
    def window(self) -> float:
        """The current estimate of how long a request counts against the quota."""
        return self._window

    def snapshot(self) -> RateLimitState:
        learned = self._window if self._learned else None
        return RateLimitState(
            limit=self._limit,
            remaining=self._remaining,
            window=learned,
            refill_rate=(self._limit / learned) if learned and self._limit else None,
            in_flight=self._in_flight,
            throttled_seconds=self._throttled,
            throttle_waits=self._throttle_waits,
            rate_limited=self._rate_limited,
        )

    # -- the log of requests that count -----------------------------------------------
    def _live(self) -> int:
        return len(self._times) - self._head

    def _pop(self, count: int) -> None:
        """Drop the *count* oldest entries."""
        self._head += count
        if self._head > 1024 and self._head * 2 > len(self._times):
            del self._times[: self._head]
            self._head = 0

    def _pad(self, count: int, now: float) -> None:
        """Add *count* entries the server counts but we did not send (another client)."""
        stamp = self._times[self._head] if self._live() else now
        self._times[self._head : self._head] = [stamp] * count

    def _note_latency(self, now: float, seconds: float) -> None:
        latencies = self._latencies
        while latencies and latencies[-1][1] <= seconds:
            latencies.pop()  # a slower answer came later: the faster one never matters
        latencies.append((now, seconds))

    def _slowest(self, now: float) -> float:
        """The slowest answer of the last two windows: the delay to allow on top of the
        window, since the server counts a request from when it arrived."""
        latencies = self._latencies
        horizon = now - 2 * self._window
        while latencies and latencies[0][0] < horizon:
            latencies.popleft()
        return latencies[0][1] if latencies else 0.0

    def _due(self, now: float) -> int:
        """How many logged requests the model says no longer count."""
        horizon = now - self._window - self._slowest(now)
        return bisect.bisect_right(self._times, horizon, self._head) - self._head

    def _wait_time(self, now: float) -> float:
        """0 when a request may go now, else how long until the model says one may.

        Quota the server confirmed is spent freely. Quota the model only predicts has
        come back is tested by one probe at a time, so a wrong guess costs one 429.
        """
        if now < self._paused_until:
            return self._paused_until - now
        if not self._headers_seen:
            if self._answered or self._in_flight == 0:
                self._probe_seq = self._seq + 1
                return 0.0
            return math.inf  # first contact: one request learns the limit
        assert self._limit is not None
        excess = self._live() - self._limit  # >= 0: no quota the server confirmed
        if excess < 0:
            return 0.0
        if self._probe_seq:
            return math.inf  # a probe is out; its answer re-syncs us
        # The server counts a request from when it arrives, a little after we sent it:
        # allow the typical latency on top of the window.
        predicted = self._times[self._head + excess] + self._window + self._slowest(now)
        # Someone else on the key can make the model too pessimistic; never go longer
        # than twice the typical Retry-After without asking the server again.
        if self._exacts:
            predicted = min(predicted, self._answered_at + 2 * statistics.median(self._exacts))
        if now >= predicted or self._due(now) > excess:
            self._probe_seq = self._seq + 1
            return 0.0
        return max(predicted - now, 1e-3)

    # -- the protocol --------------------------------------------------------------------
    async def acquire(self) -> Permit:
        if self._answered and not self._headers_seen and self._ceiling is None:
            now = self._clock()
            if now >= self._paused_until:
                return self._grant(now)  # the server sends no limit: nothing to wait for
        if self._lock is None:
            self._lock = asyncio.Lock()
            self._changed = asyncio.Event()
        async with self._lock:
            started = self._clock()
            waited = False
            while True:
                now = self._clock()
                wait = self._wait_time(now)
                if wait <= 0:
                    break
                if not waited:
                    waited = True
                    self._throttle_waits += 1
                    self._log.debug(
                        "throttle",
                        wait=None if math.isinf(wait) else round(wait, 4),
                        limit=self._limit,
                        remaining=self._remaining,
                        in_flight=self._in_flight,
                        paused=now < self._paused_until,
                    )
                assert self._changed is not None
                self._changed.clear()
                try:
                    async with asyncio.timeout(None if math.isinf(wait) else wait):
                        await self._changed.wait()
                except TimeoutError:
                    pass
            if self._ceiling is not None:
                try:
                    await self._ceiling.acquire()
                except asyncio.CancelledError:
                    if self._probe_seq == self._seq + 1:
                        self._probe_seq = 0  # the probe this waiter was to send never goes
                    raise
            now = self._clock()
            if waited:
                self._throttled += now - started
            return self._grant(now)

    def _grant(self, now: float) -> Permit:
        self._seq += 1
        self._in_flight += 1
        if self._headers_seen or not self._answered:
            self._times.append(now)
        return Permit(self._seq, now)

    async def settle(self, permit: Permit, response: ResponseInfo | None) -> None:
        self._in_flight -= 1
        probe = permit.seq == self._probe_seq
        if probe:
            self._probe_seq = 0
        now = self._clock()
        if response is not None:
            self._answered = True
            self._answered_at = now
            self._note_latency(now, now - permit.sent_at)
            if probe and response.status != 429 and (response.remaining or 0) > 0:
                # The server had quota to spare when the model first let one through:
                # the window may be shorter than we think.
                self._decay(now)
            if response.limit is not None and response.remaining is not None:
                self._sync(permit, response.limit, response.remaining, now)
            if response.status == 429:
                self._rate_limited += 1
                if response.remaining:
                    # Quota left, yet 429: not our quota speaking (an upstream or proxy
                    # limit). Wait as asked, but learn nothing about the window from it.
                    self._pause(response.retry_after or self._upstream_pause, now, "429")
                else:
                    self._on_rate_limited(response.retry_after, now)
            elif response.status == 503:
                self._pause(response.retry_after or self._upstream_pause, now, "upstream")
        if self._changed is not None:
            self._changed.set()

    def _sync(self, permit: Permit, limit: int, remaining: int, now: float) -> None:
        self._headers_seen = True
        if limit != self._limit:
            if self._limit is not None:
                self._log.info("rate_limit_changed", old=self._limit, new=limit)
                self._shrunk = limit < self._limit
            self._limit = limit
        newest = permit.seq > self._sync_seq
        if newest:
            self._sync_seq = permit.seq
            self._remaining = remaining
        if remaining > 0:
            self._shrunk = False
        # Requests still in flight may or may not be counted yet: count only answered
        # ones, so a return is never assumed early. An older answer (out of order) may
        # lower the budget but never raise it; after the limit drops, "0 remaining" may
        # hide more than `limit` in use, so only a positive count frees quota.
        counted = self._live() - self._in_flight
        used = limit - remaining
        if counted > used and newest and not self._shrunk:
            self._pop(counted - used)
        elif self._live() < used:
            # More in use than we ever sent and logged: another client on the key. (Our
            # own requests in flight are logged already, answered or not.)
            self._pad(used - self._live(), now)

    def _decay(self, now: float) -> None:
        # A predicted return that the server confirmed: the window may be shorter than
        # we think. Shrink it by 1% per window of time, until a 429 says otherwise.
        elapsed = now - self._decayed_at if self._decayed_at else 0.0
        self._decayed_at = now
        self._window *= max(0.9, 1.0 - 0.01 * elapsed / self._window)

    def _on_rate_limited(self, retry_after: float | None, now: float) -> None:
        if retry_after is not None:
            live = self._live()
            if live:
                # The server says when quota comes back; in our model that is when the
                # logged request whose expiry makes room for one more stops counting.
                pivot = self._times[self._head + max(0, min(live - 1, live - (self._limit or 0)))]
                exact = max(now + retry_after - pivot, 1e-3)
                self._exacts.append(exact)
                window = exact * 1.03  # a margin that spares the next 429
                if now - self._last_429 < self._window:
                    # 429s in a row: the model is early (quota returns gradually, as
                    # from a token bucket, or someone else shares the key); grow faster,
                    # but never past a few times what the server itself said.
                    window = max(window, min(self._window * 1.5, 4 * max(self._exacts)))
                self._window = window
                self._learned = True
        else:
            # No hint from the server: assume the window is twice what we thought.
            retry_after = self._window
            self._window *= 2
        self._decayed_at = self._last_429 = now
        self._pause(retry_after, now, "rate_limited")

    def _pause(self, seconds: float, now: float, reason: str) -> None:
        # A server asking for an hour is not waited out by everyone: requests past
        # max_pause get the 429 again and the retry policy decides (it gives up).
        until = now + min(seconds, self._max_pause)
        if until > self._paused_until:
            self._paused_until = until
            self._log.info("pause", reason=reason, seconds=round(seconds, 4))
