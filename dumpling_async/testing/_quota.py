"""The fake server's per-key rate limit: the algorithms real APIs run.

``RateLimitRule(limit, window, algorithm)``; every algorithm lets a burst of ``limit``
requests through after an idle ``window`` and sustains ``limit / window`` per second:

- ``fixed``: a fixed window starting at the key's first request; the count restarts at
  each boundary.
- ``sliding``: a sliding log: at most ``limit`` requests in any ``window`` seconds; a
  request counts again ``window`` seconds after it was let through.
- ``sliding_counter``: the sliding window counter of Cloudflare, the ``limits`` library
  and many gateways: fixed windows (from the key's first request) counted, and the
  weighted count = the current window's count + the previous window's count x the share
  of the previous window still inside the sliding window (1 - elapsed / window). A request
  is allowed while the weighted count is below ``limit``; remaining = limit -
  floor(weighted count), as ``limits`` computes it.
- ``token_bucket``: ``limit`` tokens, refilled continuously at ``limit / window`` per second.
- ``gcra``: the generic cell rate algorithm (leaky bucket as a meter): emission interval
  T = window / limit, burst tolerance tau = window - T, a theoretical arrival time TAT; a
  request is allowed when now >= TAT - tau and moves TAT to max(TAT, now) + T. Remaining is
  how many more would be allowed right now: floor((tau - (TAT - now)) / T) + 1, in
  [0, limit] (``limit`` after idle, ``limit - 1`` after one request).

Keyword-only options of the rule make it behave like other real servers (their defaults
keep the behaviour above):

- ``aligned=True``: the fixed windows of ``fixed`` and ``sliding_counter`` start at
  multiples of ``window`` on the clock passed in (``floor(now / window) * window``), as
  Redis and serverless limiters do with Unix time, not at the key's first request (so the
  first window is shorter). Other algorithms ignore it.
- ``refill=N`` (``token_bucket`` only, 1 <= N <= limit): the bucket holds ``limit`` tokens
  (the burst, and what ``X-RateLimit-Limit`` says) but only N come back per ``window``:
  the sustainable rate is N / window, and every wait and reset is computed at that rate.
- ``lockout=True``: after one denial the key is refused, without counting, until the
  reset: the end of the current fixed window for ``fixed`` and ``sliding_counter`` (for
  ``sliding_counter`` just past it, as the weighted count may still be the limit at the
  end itself), the time ``until_allowed`` gave at the denial for the others. Meanwhile
  remaining is 0 and ``take`` and ``until_allowed`` give the seconds left of the lockout.
- ``window_end_reset=True``: for ``fixed`` and ``sliding_counter``, the reset the headers
  report (``reset_after``) is always the end of the current fixed window, as some
  serverless libraries report it; for ``sliding_counter`` it over-promises, as part of the
  previous window still counts after it. Others ignore it.

``Window`` is one key's state. Times are seconds on any clock, passed in, so the
algorithms are tested with explicit times. ``take(now)`` counts one request (None) or
says how long until one would be allowed; ``until_allowed`` / ``until_full`` say when at
least one more request is allowed / when the quota is whole again if nothing is sent
(what ``Retry-After`` and the reset headers are made of). ``set_limit`` changes the limit
and keeps what each algorithm stores (counts, log, TAT), as a reconfigured real server
would; a token bucket holding more tokens than the new limit drops the excess (and keeps
its ``refill``, which the new limit must not be below).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal, Protocol

import attrs

__all__ = ["ALGORITHMS", "Algorithm", "RateLimitRule", "Window", "aligns_to_clock"]

Algorithm = Literal["fixed", "sliding", "sliding_counter", "token_bucket", "gcra"]
ALGORITHMS: tuple[Algorithm, ...] = ("fixed", "sliding", "sliding_counter", "token_bucket", "gcra")
# Float slack: a count that is 38.9999999 by rounding is 39; a computed wait lands just
# past its boundary, so a request sent exactly after it is allowed.
_EPS = 1e-9
_NUDGE = 1e-6


def _positive_int(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be >= 1, got {value}")


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value}")


def _known(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {value!r}")


def _refill(
    instance: RateLimitRule, attribute: attrs.Attribute[int | None], value: int | None
) -> None:
    if value is None:
        return
    if instance.algorithm != "token_bucket":
        raise ValueError(f"refill is for token_bucket only, not {instance.algorithm}")
    if not 1 <= value <= instance.limit:
        raise ValueError(f"refill must be between 1 and limit ({instance.limit}), got {value}")


@attrs.frozen
class RateLimitRule:
    """``limit`` requests per ``window`` seconds per API key, by ``algorithm``.

    The keyword-only options make it behave like other real servers; their defaults
    keep the behaviour of ``algorithm`` alone. ``aligned=True`` starts the fixed windows
    of ``fixed`` and ``sliding_counter`` at multiples of ``window`` on the clock (Unix
    time in the fake server), as Redis-backed limiters do, instead of at the key's first
    request. ``refill=N`` (``token_bucket`` only, 1 to ``limit``) gives a bucket of
    ``limit`` tokens that gets only N back per ``window``: a burst of ``limit``, then
    N / window per second. ``lockout=True`` refuses every request of a key after one
    denial, uncounted and with Remaining 0, until the reset (the end of the current fixed
    window for ``fixed`` and ``sliding_counter``, else the wait the denial gave).
    ``window_end_reset=True`` makes ``fixed`` and ``sliding_counter`` report the end of
    the current fixed window as the reset, as some serverless libraries do (for
    ``sliding_counter`` it over-promises: part of the previous window still counts).
    """

    limit: int = attrs.field(validator=_positive_int)
    window: float = attrs.field(validator=_positive)
    algorithm: Algorithm = attrs.field(default="fixed", validator=_known)
    aligned: bool = attrs.field(default=False, kw_only=True)
    refill: int | None = attrs.field(default=None, kw_only=True, validator=_refill)
    lockout: bool = attrs.field(default=False, kw_only=True)
    window_end_reset: bool = attrs.field(default=False, kw_only=True)


def aligns_to_clock(rule: RateLimitRule) -> bool:
    """Whether *rule* has windows at multiples of its window on the clock it is given
    (so the fake server gives it Unix time)."""
    return rule.aligned and rule.algorithm in ("fixed", "sliding_counter")


def _window_index(now: float, window: float) -> int:
    """k such that k * window <= now < (k + 1) * window, computed as the ends are."""
    k = math.floor(now / window)
    if k * window > now:
        k -= 1
    elif (k + 1) * window <= now:
        k += 1
    return k


class _State(Protocol):
    """One algorithm's state; *limit* is passed in because it may change."""

    def remaining(self, now: float, limit: int) -> int: ...
    def until_allowed(self, now: float, limit: int) -> float: ...
    def until_full(self, now: float, limit: int) -> float: ...
    def add(self, now: float, limit: int) -> None: ...
    def resize(self, limit: int) -> None: ...
    def window_end(self, now: float) -> float | None:
        """When the current fixed window ends; None for algorithms without one."""

    def lock_end(self, now: float, wait: float) -> float:
        """When a lockout that starts with a denial at *now* (*wait*: until allowed) ends."""


class _Unwindowed:
    """What an algorithm without fixed windows says about them: none; a lockout lasts
    until the denied request would have been allowed."""

    def window_end(self, now: float) -> float | None:
        return None

    def lock_end(self, now: float, wait: float) -> float:
        return now + wait


class _Windows:
    """Fixed windows of one length, from the key's first request or (aligned) at
    multiples of the window on the clock passed in."""

    def __init__(self, rule: RateLimitRule, now: float) -> None:
        self.window, self.aligned = rule.window, rule.aligned
        # Aligned: the window's number on the clock, so its start and end are computed
        # one way (index * window) and a request at the reported end is in the next one.
        self.index = _window_index(now, rule.window) if rule.aligned else 0
        self.start = self.index * rule.window if rule.aligned else now

    @property
    def end(self) -> float:
        return (self.index + 1) * self.window if self.aligned else self.start + self.window

    def _advance(self, now: float) -> int:
        """Move to the window holding *now*: how many windows that passed (0: none)."""
        if self.aligned:
            index = _window_index(now, self.window)
            if index <= self.index:
                return 0
            passed, self.index = index - self.index, index
            self.start = index * self.window
            return passed
        if now - self.start < self.window:
            return 0
        passed = math.floor((now - self.start) / self.window)
        self.start += passed * self.window
        return passed

    def _roll(self, now: float) -> None:
        raise NotImplementedError

    def window_end(self, now: float) -> float | None:
        self._roll(now)
        return self.end

    def lock_end(self, now: float, wait: float) -> float:
        self._roll(now)
        return self.end


class _Fixed(_Windows):
    def __init__(self, rule: RateLimitRule, now: float, limit: int) -> None:
        super().__init__(rule, now)
        self.count = 0

    def _roll(self, now: float) -> None:
        if self._advance(now):
            self.count = 0

    def remaining(self, now: float, limit: int) -> int:
        self._roll(now)
        return limit - self.count

    def until_allowed(self, now: float, limit: int) -> float:
        self._roll(now)
        return 0.0 if self.count < limit else self.end - now

    def until_full(self, now: float, limit: int) -> float:
        self._roll(now)
        return 0.0 if self.count == 0 else self.end - now

    def add(self, now: float, limit: int) -> None:
        self._roll(now)
        self.count += 1

    def resize(self, limit: int) -> None:
        pass


class _SlidingLog(_Unwindowed):
    def __init__(self, rule: RateLimitRule, now: float, limit: int) -> None:
        self.window = rule.window
        self.log: deque[float] = deque()

    def _drop(self, now: float) -> None:
        while self.log and self.log[0] + self.window <= now:
            self.log.popleft()

    def remaining(self, now: float, limit: int) -> int:
        self._drop(now)
        return limit - len(self.log)

    def until_allowed(self, now: float, limit: int) -> float:
        self._drop(now)
        excess = len(self.log) - limit
        return 0.0 if excess < 0 else self.log[excess] + self.window - now

    def until_full(self, now: float, limit: int) -> float:
        self._drop(now)
        return self.log[-1] + self.window - now if self.log else 0.0

    def add(self, now: float, limit: int) -> None:
        self.log.append(now)

    def resize(self, limit: int) -> None:
        pass


class _SlidingCounter(_Windows):
    def __init__(self, rule: RateLimitRule, now: float, limit: int) -> None:
        super().__init__(rule, now)
        self.previous = self.current = 0

    def _roll(self, now: float) -> None:
        windows = self._advance(now)
        if windows:
            self.previous = self.current if windows == 1 else 0
            self.current = 0

    def weighted(self, now: float) -> float:
        """The weighted count at *now* (as ``limits`` computes it)."""
        self._roll(now)
        share = (self.end - now) / self.window  # of the previous window
        return self.previous * share + self.current

    def remaining(self, now: float, limit: int) -> int:
        return limit - math.floor(self.weighted(now) + _EPS)

    def _until_below(self, now: float, level: int) -> float:
        """Seconds until the weighted count is below *level* (0 if it is now)."""
        if self.weighted(now) + _EPS < level:
            return 0.0
        end = self.end
        if self.current < level:  # then previous > 0: within this window, as it decays
            at = end - self.window * (level - self.current) / self.previous
        else:  # in the next window, this window's count becomes the decaying one
            at = end + self.window * (1.0 - level / self.current)
        return max(0.0, at - now) + _NUDGE

    def until_allowed(self, now: float, limit: int) -> float:
        return self._until_below(now, limit)

    def until_full(self, now: float, limit: int) -> float:
        return self._until_below(now, 1)

    def lock_end(self, now: float, wait: float) -> float:
        # At its window's end the weighted count may still be the limit: just past it.
        self._roll(now)
        return self.end + _NUDGE

    def add(self, now: float, limit: int) -> None:
        self._roll(now)
        self.current += 1

    def resize(self, limit: int) -> None:
        pass


class _TokenBucket(_Unwindowed):
    def __init__(self, rule: RateLimitRule, now: float, limit: int) -> None:
        self.window, self.tokens, self.stamp = rule.window, float(limit), now
        self.refill = rule.refill  # tokens back per window; None: the limit

    def _per(self, limit: int) -> int:
        return limit if self.refill is None else self.refill

    def _refill(self, now: float, limit: int) -> None:
        back = (now - self.stamp) * self._per(limit) / self.window
        self.tokens = min(float(limit), self.tokens + back)
        self.stamp = now

    def remaining(self, now: float, limit: int) -> int:
        self._refill(now, limit)
        return math.floor(self.tokens + _EPS)

    def until_allowed(self, now: float, limit: int) -> float:
        self._refill(now, limit)
        return max(0.0, (1.0 - self.tokens) * self.window / self._per(limit))

    def until_full(self, now: float, limit: int) -> float:
        self._refill(now, limit)
        return max(0.0, (limit - self.tokens) * self.window / self._per(limit))

    def add(self, now: float, limit: int) -> None:
        self._refill(now, limit)
        self.tokens -= 1.0

    def resize(self, limit: int) -> None:
        self.tokens = min(self.tokens, float(limit))


class _Gcra(_Unwindowed):
    def __init__(self, rule: RateLimitRule, now: float, limit: int) -> None:
        self.window, self.tat = rule.window, now

    def remaining(self, now: float, limit: int) -> int:
        # floor((tau - backlog) / T) + 1 == floor((window - backlog) / T), as tau + T = window
        backlog = max(self.tat - now, 0.0)
        return math.floor((self.window - backlog) * limit / self.window + _EPS)

    def until_allowed(self, now: float, limit: int) -> float:
        tau = self.window - self.window / limit
        return max(0.0, self.tat - tau - now)

    def until_full(self, now: float, limit: int) -> float:
        return max(0.0, self.tat - now)

    def add(self, now: float, limit: int) -> None:
        self.tat = max(self.tat, now) + self.window / limit

    def resize(self, limit: int) -> None:
        pass


_STATES: dict[str, type[_Fixed | _SlidingLog | _SlidingCounter | _TokenBucket | _Gcra]] = {
    "fixed": _Fixed,
    "sliding": _SlidingLog,
    "sliding_counter": _SlidingCounter,
    "token_bucket": _TokenBucket,
    "gcra": _Gcra,
}


class Window:
    """Server-side quota state for one key (see the module docstring)."""

    def __init__(self, rule: RateLimitRule, now: float) -> None:
        self.rule = rule
        self._limit = rule.limit
        self._state: _State = _STATES[rule.algorithm](rule, now, rule.limit)
        self._locked_until: float | None = None  # lockout: refused, uncounted, until then

    @property
    def limit(self) -> int:
        return self._limit

    @limit.setter
    def limit(self, limit: int) -> None:
        self.set_limit(limit)

    def set_limit(self, limit: int) -> None:
        """Change the limit from now on, keeping what was counted (and a lockout)."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        if self.rule.refill is not None and limit < self.rule.refill:
            raise ValueError(f"limit must be >= refill ({self.rule.refill}), got {limit}")
        self._limit = limit
        self._state.resize(limit)

    def _lock_left(self, now: float) -> float:
        """Seconds left of the lockout (0 when there is none)."""
        if self._locked_until is None:
            return 0.0
        if now >= self._locked_until:
            self._locked_until = None
            return 0.0
        return self._locked_until - now

    def remaining(self, now: float) -> int:
        """How many more requests would be allowed at *now*, in ``[0, limit]``."""
        if self._lock_left(now):
            return 0
        return max(0, min(self._limit, self._state.remaining(now, self._limit)))

    def until_allowed(self, now: float) -> float:
        """Seconds until at least one request is allowed (0 if one is now)."""
        locked = self._lock_left(now)
        if locked:
            return max(locked, _NUDGE)
        if self.remaining(now) > 0:
            return 0.0
        return max(self._state.until_allowed(now, self._limit), _NUDGE)

    def until_full(self, now: float) -> float:
        """Seconds until the whole quota is back, if nothing more is sent (0 if it is)."""
        locked = self._lock_left(now)
        if self.remaining(now) >= self._limit:
            return 0.0
        return max(locked, self._state.until_full(now, self._limit), _NUDGE)

    def reset_after(self, now: float) -> float:
        """The reset time the headers report: until one more request is allowed when
        none is, else until the quota is whole again; with ``window_end_reset``, until
        the end of the current fixed window."""
        if self.rule.window_end_reset:
            end = self._state.window_end(now)
            if end is not None:
                return max(end - now, _NUDGE)
        return self.until_allowed(now) if self.remaining(now) <= 0 else self.until_full(now)

    def take(self, now: float) -> float | None:
        """Count one request; None when allowed, else seconds until one would be."""
        if self.remaining(now) <= 0:
            wait = self.until_allowed(now)
            if self.rule.lockout and self._locked_until is None:
                self._locked_until = self._state.lock_end(now, wait)
                wait = self.until_allowed(now)
            return wait
        self._state.add(now, self._limit)
        return None
