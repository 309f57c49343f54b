"""How many requests a client keeps in flight.

To use a quota of *r* requests per second when answers take *t* seconds, about *r x t*
requests must be in flight (Little's law; TCP's BBR calls it the bandwidth-delay
product). A user who sets ``max_concurrency`` gets that number as a hard cap. Otherwise
``Concurrency`` sizes it from the limiter's learned rate and the answer times it
measures, between ``floor`` and ``ceiling``; without a known rate (a server that sends no
rate-limit headers) it stays at ``floor``, unless answers show quota left while every
slot is taken: then the slots, not the quota, hold the client back, and it grows by one
per answer (doubling each round trip, as TCP's slow start) until the quota binds and its
rate is learned. A 429 or 503 while quota is left means a
limit on requests in flight somewhere upstream: the size is cut (multiplicative
decrease) and creeps back up by one per round of answers (additive increase), as
adaptive-concurrency limiters do.
"""

from __future__ import annotations

import math

import attrs

__all__ = ["Concurrency", "Sizing"]


@attrs.frozen(kw_only=True)
class Sizing:
    """The numbers of automatic sizing, and why each is what it is."""

    # Without a rate to size from, as many as a careful hand-written client would use.
    floor: int = 16
    # Enough for 64 requests/s at 4 s answers; the connection pool is this large.
    ceiling: int = 256
    # In flight = rate x mean answer time x headroom + spare: the headroom covers the
    # spread of answer times (a slow tail holds slots longer than the mean says), the
    # spare a burst of quota that comes back at once.
    headroom: float = 1.5
    spare: int = 4
    # Each answer time moves the mean by this share (about the last 20 answers).
    smoothing: float = 0.05
    # A refusal with quota left cuts the size to this share.
    decrease: float = 0.7


class Concurrency:
    """The number of requests allowed in flight (see the module docstring)."""

    __slots__ = ("_answer", "_cap", "_limit", "_room", "sizing")

    def __init__(self, cap: int | None, sizing: Sizing | None = None) -> None:
        self.sizing = sizing or Sizing()
        self._cap = cap
        self._answer: float | None = None  # mean answer time (seconds)
        self._room = float(self.sizing.ceiling)  # what upstream refusals leave
        self._limit = cap if cap is not None else self.sizing.floor

    @property
    def automatic(self) -> bool:
        return self._cap is None

    @property
    def limit(self) -> int:
        """Requests that may be in flight now."""
        return self._limit

    @property
    def bound(self) -> int:
        """The most it can ever be (the connection pool's size)."""
        return self._cap if self._cap is not None else self.sizing.ceiling

    @property
    def mean_answer(self) -> float | None:
        return self._answer

    def answered(self, seconds: float, rate: float | None) -> None:
        """An answer came after *seconds*; *rate* is the limiter's learned refill rate."""
        if seconds >= 0 and math.isfinite(seconds):
            mean = self._answer
            share = self.sizing.smoothing
            self._answer = seconds if mean is None else mean + share * (seconds - mean)
        if self._cap is None:
            self._room = min(self._room + 1.0 / max(self._room, 1.0), self.sizing.ceiling)
            self._resize(rate)

    def quota_left_at_the_cap(self) -> None:
        """An answer showed quota left while every slot was taken (no rate known yet)."""
        if self._cap is None and self._limit < int(self._room):
            self._limit += 1

    def refused_with_quota_left(self, rate: float | None) -> None:
        """A 429 or 503 although the account's quota was not used up."""
        if self._cap is None:
            self._room = max(1.0, min(self._room, self._limit) * self.sizing.decrease)
            self._resize(rate)

    def _resize(self, rate: float | None) -> None:
        sizing = self.sizing
        want = sizing.floor
        if rate is not None and rate > 0 and self._answer is not None:
            need = math.ceil(rate * self._answer * sizing.headroom) + sizing.spare
            want = min(max(need, sizing.floor), sizing.ceiling)
        if rate is None:
            want = max(want, self._limit)  # what slow start reached stays until a rate is known
        self._limit = max(1, min(want, int(self._room)))
