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

``Window`` is one key's state. Times are seconds on any clock, passed in, so the
algorithms are tested with explicit times. ``take(now)`` counts one request (None) or
says how long until one would be allowed; ``until_allowed`` / ``until_full`` say when at
least one more request is allowed / when the quota is whole again if nothing is sent
(what ``Retry-After`` and the reset headers are made of). ``set_limit`` changes the limit
and keeps what each algorithm stores (counts, log, TAT), as a reconfigured real server
would; a token bucket holding more tokens than the new limit drops the excess.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal, Protocol

import attrs

__all__ = ["ALGORITHMS", "Algorithm", "RateLimitRule", "Window"]

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


@attrs.frozen
class RateLimitRule:
    """``limit`` requests per ``window`` seconds per API key, by ``algorithm``."""

    limit: int = attrs.field(validator=_positive_int)
    window: float = attrs.field(validator=_positive)
    algorithm: Algorithm = attrs.field(default="fixed", validator=_known)


class _State(Protocol):
    """One algorithm's state; *limit* is passed in because it may change."""

    def remaining(self, now: float, limit: int) -> int: ...
    def until_allowed(self, now: float, limit: int) -> float: ...
    def until_full(self, now: float, limit: int) -> float: ...
    def add(self, now: float, limit: int) -> None: ...
    def resize(self, limit: int) -> None: ...


class _Fixed:
    def __init__(self, window: float, now: float, limit: int) -> None:
        self.window, self.start, self.count = window, now, 0

    def _roll(self, now: float) -> None:
        if now - self.start >= self.window:
            self.start += math.floor((now - self.start) / self.window) * self.window
            self.count = 0

    def remaining(self, now: float, limit: int) -> int:
        self._roll(now)
        return limit - self.count

    def until_allowed(self, now: float, limit: int) -> float:
        self._roll(now)
        return 0.0 if self.count < limit else self.start + self.window - now

    def until_full(self, now: float, limit: int) -> float:
        self._roll(now)
        return 0.0 if self.count == 0 else self.start + self.window - now

    def add(self, now: float, limit: int) -> None:
        self._roll(now)
        self.count += 1

    def resize(self, limit: int) -> None:
        pass


class _SlidingLog:
    def __init__(self, window: float, now: float, limit: int) -> None:
        self.window = window
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


class _SlidingCounter:
    def __init__(self, window: float, now: float, limit: int) -> None:
        self.window, self.start = window, now
        self.previous = self.current = 0

    def _roll(self, now: float) -> None:
        if now - self.start >= self.window:
            windows = math.floor((now - self.start) / self.window)
            self.previous = self.current if windows == 1 else 0
            self.current = 0
            self.start += windows * self.window

    def weighted(self, now: float) -> float:
        """The weighted count at *now* (as ``limits`` computes it)."""
        self._roll(now)
        share = (self.start + self.window - now) / self.window  # of the previous window
        return self.previous * share + self.current

    def remaining(self, now: float, limit: int) -> int:
        return limit - math.floor(self.weighted(now) + _EPS)

    def _until_below(self, now: float, level: int) -> float:
        """Seconds until the weighted count is below *level* (0 if it is now)."""
        if self.weighted(now) + _EPS < level:
            return 0.0
        end = self.start + self.window
        if self.current < level:  # then previous > 0: within this window, as it decays
            at = end - self.window * (level - self.current) / self.previous
        else:  # in the next window, this window's count becomes the decaying one
            at = end + self.window * (1.0 - level / self.current)
        return max(0.0, at - now) + _NUDGE

    def until_allowed(self, now: float, limit: int) -> float:
        return self._until_below(now, limit)

    def until_full(self, now: float, limit: int) -> float:
        return self._until_below(now, 1)

    def add(self, now: float, limit: int) -> None:
        self._roll(now)
        self.current += 1

    def resize(self, limit: int) -> None:
        pass


class _TokenBucket:
    def __init__(self, window: float, now: float, limit: int) -> None:
        self.window, self.tokens, self.stamp = window, float(limit), now

    def _refill(self, now: float, limit: int) -> None:
        self.tokens = min(float(limit), self.tokens + (now - self.stamp) * limit / self.window)
        self.stamp = now

    def remaining(self, now: float, limit: int) -> int:
        self._refill(now, limit)
        return math.floor(self.tokens + _EPS)

    def until_allowed(self, now: float, limit: int) -> float:
        self._refill(now, limit)
        return max(0.0, (1.0 - self.tokens) * self.window / limit)

    def until_full(self, now: float, limit: int) -> float:
        self._refill(now, limit)
        return max(0.0, (limit - self.tokens) * self.window / limit)

    def add(self, now: float, limit: int) -> None:
        self._refill(now, limit)
        self.tokens -= 1.0

    def resize(self, limit: int) -> None:
        self.tokens = min(self.tokens, float(limit))


class _Gcra:
    def __init__(self, window: float, now: float, limit: int) -> None:
        self.window, self.tat = window, now

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
        self._state: _State = _STATES[rule.algorithm](rule.window, now, rule.limit)

    @property
    def limit(self) -> int:
        return self._limit

    @limit.setter
    def limit(self, limit: int) -> None:
        self.set_limit(limit)

    def set_limit(self, limit: int) -> None:
        """Change the limit from now on, keeping what was counted."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self._limit = limit
        self._state.resize(limit)

    def remaining(self, now: float) -> int:
        """How many more requests would be allowed at *now*, in ``[0, limit]``."""
        return max(0, min(self._limit, self._state.remaining(now, self._limit)))

    def until_allowed(self, now: float) -> float:
        """Seconds until at least one request is allowed (0 if one is now)."""
        if self.remaining(now) > 0:
            return 0.0
        return max(self._state.until_allowed(now, self._limit), _NUDGE)

    def until_full(self, now: float) -> float:
        """Seconds until the whole quota is back, if nothing more is sent (0 if it is)."""
        if self.remaining(now) >= self._limit:
            return 0.0
        return max(self._state.until_full(now, self._limit), _NUDGE)

    def reset_after(self, now: float) -> float:
        """The reset time the headers report: until one more request is allowed when
        none is, else until the quota is whole again."""
        return self.until_allowed(now) if self.remaining(now) <= 0 else self.until_full(now)

    def take(self, now: float) -> float | None:
        """Count one request; None when allowed, else seconds until one would be."""
        if self.remaining(now) <= 0:
            return self.until_allowed(now)
        self._state.add(now, self._limit)
        return None
