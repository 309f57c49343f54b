"""What the quota model has learned of *when* used units come back: the two estimates
behind its STEPS and GRADUAL states (``quota.Mode``).

- ``StepWindow``: on a step server (a sliding log, and conservatively a fixed window) a
  unit comes back a window after it was counted. The window is a bracket ``(lo, hi]``:
  an answer that shows a unit still counted raises ``lo``, one that shows it back lowers
  ``hi``. The model sends on ``hi`` (safe) and tests inside the bracket while it is wide.
- ``RefillRate``: on a gradual server (token bucket, GCRA, sliding window counter) units
  come back at a steady rate, measured as the units answers showed back over the send
  times they span.

Both take lags and times in seconds of the client's clock, measured between send times.
"""

from __future__ import annotations

from collections import deque

import attrs

__all__ = ["RefillRate", "StepWindow", "seen_in_part"]


@attrs.define
class StepWindow:
    """The window of a step server, as learned: ``lo < window <= hi``."""

    guess: float  # the first guess, until an answer says more
    lo: float = 0.0
    hi: float | None = None
    tight: float = 1.04  # a bracket this narrow (hi / lo) is as good as exact

    @property
    def value(self) -> float:
        """The window to send on: the top of the bracket, or a growing guess above what
        was seen still counted."""
        if self.hi is not None:
            return self.hi
        return max(self.guess, self.lo * 1.5)

    @property
    def known(self) -> bool:
        return self.hi is not None

    @property
    def is_tight(self) -> bool:
        return self.hi is not None and self.hi <= max(self.lo, 1e-9) * self.tight

    @property
    def test_lag(self) -> float | None:
        """The lag to test while the bracket is wide (its middle), else None."""
        if self.hi is None or self.is_tight:
            return None
        return (self.lo + self.hi) / 2

    def back_within(self, lag: float) -> None:
        """A unit was back at most *lag* after it was counted. Ignored when another was
        seen still counted for longer (a fixed window returns a unit counted late in it
        early): the longest lag is the window."""
        if lag > self.lo:
            self.hi = lag if self.hi is None else min(self.hi, lag)

    def still_counted(self, lag: float) -> None:
        """A unit was still counted *lag* after it was counted."""
        if lag <= self.lo:
            return
        self.lo = lag
        if self.hi is not None and self.hi <= lag:
            self.hi = None  # the bracket was wrong: grow again

    def exactly(self, lag: float, slack: float, *, least: float | None = None) -> None:
        """The server said when a unit is back: *lag* after it was counted, within
        *slack*. A fixed window says shorter lags for units counted later in it: keep
        the longest. With *least*, the unit is one of several and only *least* bounds the
        window from below (the oldest may have been back long ago, unseen yet)."""
        if self.hi is not None and lag + slack < self.lo:
            return
        self.lo = max(self.lo, lag - slack if least is None else least)
        self.hi = max(lag + slack, self.lo + slack)


def seen_in_part(
    first: tuple[float, float] | None,
    look: tuple[float, float],
    jitter: float,
    proof: float,
    *,
    learning: bool,
) -> tuple[bool, tuple[float, float]]:
    """A group sent together seen back in part, *look* = (its newest unit back, the send
    time of the answer that showed it), after the *first* such look: whether the server
    is gradual, and the look to keep as the first.

    A step server returns a group within the jitter of its sends: one still only in part
    *proof* seconds after the first look comes back gradually. While learning, a busy
    loop spreads each burst's sends, so the probes rarely see one group twice; but a step
    server returns every unit a window after it was counted, so two groups' lags agree
    within two jitters there, and two that do not prove it gradual too.
    """
    if first is None:
        return False, look
    late = look[1] - first[1] >= proof
    if abs(first[0] - look[0]) <= jitter:
        return late, first  # the same group, still in part
    lags_differ = abs((look[1] - look[0]) - (first[1] - first[0])) > 2 * jitter
    if late and lags_differ and learning:
        return True, first
    return False, look


class RefillRate:
    """Units per second a gradual server returns, measured from answers over the last
    ``span`` units (a couple of quotas: fewer and one early answer skews it)."""

    __slots__ = ("_samples", "span")

    def __init__(self, *, span: int) -> None:
        self._samples: deque[tuple[float, int]] = deque()  # (sent at, units back by then)
        self.span = span

    def start(self, since: float, at: float, units: int) -> None:
        """The first evidence: *units* back between *since* and *at*."""
        self._samples.clear()
        self._samples.append((since, 0))
        self._samples.append((at, units))

    def add(self, at: float, units: int) -> None:
        """*units* more were back at *at* (send time of the answer that showed them)."""
        samples = self._samples
        if not samples:
            samples.append((at, 0))
            return
        last_at, total = samples[-1]
        if at < last_at:
            return  # older news
        total += units
        samples.append((at, total))
        while len(samples) > 2 and total - samples[1][1] >= self.span:
            samples.popleft()

    @property
    def value(self) -> float | None:
        samples = self._samples
        if len(samples) < 2:
            return None
        (first_at, first), (last_at, last) = samples[0], samples[-1]
        if last_at <= first_at or last <= first:
            return None
        return (last - first) / (last_at - first_at)

    def scale(self, factor: float) -> None:
        self._samples = deque((at, round(n * factor)) for at, n in self._samples)

    def state(self) -> list[list[float]]:
        return [[at, float(n)] for at, n in self._samples]

    def restore(self, samples: list[list[float]]) -> None:
        self._samples = deque((float(at), int(n)) for at, n in samples)
