"""What the server still counts of the key's usage: a ledger of units by *send* time.

A request is counted when it reaches the server's limiter, a few tens of milliseconds
after it was sent, and the Remaining in its answer describes that moment, however late
the answer comes back. So the ledger stamps each unit with its send time, and an answer
is reconciled at its request's send time: what was sent before it was counted before it,
what was sent after it was not, and what was sent within ``jitter`` of it may be either.

The ledger only keeps books. When units come back is the quota model's business
(``quota.QuotaModel``); here an answer can only prove that units are back (the server
counts fewer than the ledger holds) or that usage we never sent exists (it counts more).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

import attrs

__all__ = ["Ledger", "Reconciled"]


@attrs.frozen
class Reconciled:
    """What one answer proved about the past."""

    popped: int  # units shown back, oldest first
    popped_newest: float | None  # the stamp of the newest of them
    split_group: int  # units sent within jitter of that one and proven still counted
    held: float | None  # the stamp of the oldest unit, if the answer shows it still counted
    proven: float | None  # the stamp of the oldest unit the answer shows still counted
    foreign: int  # units in use that this ledger never sent


class Ledger:
    """Units the server may still count, oldest first, and the requests in flight."""

    __slots__ = ("_seq", "_stamps", "_units", "counted", "in_flight")

    def __init__(self) -> None:
        self._stamps: list[float] = []  # sorted
        self._units: list[int] = []  # units sent at each stamp
        self.counted = 0  # units in the ledger
        self.in_flight: dict[int, float] = {}  # permit -> sent at
        self._seq = 0

    # -- sending ----------------------------------------------------------------------
    def grant(self, now: float) -> int:
        """A request sent now: one unit, and its permit number."""
        self._seq += 1
        self.in_flight[self._seq] = now
        self.add(now, 1)
        return self._seq

    def track(self, now: float) -> int:
        """A request sent now that uses no unit (nothing is metered): its permit number."""
        self._seq += 1
        self.in_flight[self._seq] = now
        return self._seq

    def depart(self, seq: int, at: float, *, unit: bool) -> None:
        """Request *seq*, granted earlier, left at *at*: stamp it (and its *unit*, if it
        uses one) then. Its unit is used from when it leaves, not from its permit."""
        granted = self.in_flight.get(seq)
        if granted is None or at <= granted:
            return
        self.in_flight[seq] = at
        if unit:
            self.remove(granted)
            self.add(at, 1)  # even if an answer showed it back: none could have, unsent

    def settle(self, seq: int) -> float | None:
        """The permit ended; when it was sent (None: unknown or already settled)."""
        return self.in_flight.pop(seq, None)

    def add(self, stamp: float, units: int) -> None:
        if units <= 0:
            return
        stamps = self._stamps
        if stamps and stamps[-1] == stamp:
            self._units[-1] += units
        else:
            at = bisect.bisect_right(stamps, stamp)
            stamps.insert(at, stamp)
            self._units.insert(at, units)
        self.counted += units

    def remove(self, stamp: float) -> None:
        """One unit sent at *stamp* never counted (never sent, or refused)."""
        at = bisect.bisect_left(self._stamps, stamp)
        if at < len(self._stamps) and self._stamps[at] == stamp:
            self._take(at, 1)

    def forget_units(self) -> None:
        """Drop every unit (a server that meters nothing); permits in flight stay."""
        self._stamps.clear()
        self._units.clear()
        self.counted = 0

    def expire(self, now: float, stale_after: float) -> list[int]:
        """Forget permits in flight longer than *stale_after* (their worker is gone;
        their units stay until an answer shows them back). The permits forgotten."""
        stale = [seq for seq, sent in self.in_flight.items() if now - sent > stale_after]
        for seq in stale:
            del self.in_flight[seq]
        return stale

    # -- reading ----------------------------------------------------------------------
    def count_upto(self, stamp: float) -> int:
        """Units sent at or before *stamp*."""
        end = bisect.bisect_right(self._stamps, stamp)
        return sum(self._units[:end]) if end < len(self._units) else self.counted

    def nth_stamp(self, n: int) -> float | None:
        """The stamp of the *n*-th oldest unit (1 = the oldest), None past the end."""
        for stamp, units in zip(self._stamps, self._units, strict=True):
            n -= units
            if n <= 0:
                return stamp
        return None

    def oldest(self) -> float | None:
        return self._stamps[0] if self._stamps else None

    def newest(self) -> float | None:
        return self._stamps[-1] if self._stamps else None

    # -- answers ----------------------------------------------------------------------
    def reconcile(
        self, sent: float, used: int, *, counted_itself: bool, jitter: float, fresh: bool
    ) -> Reconciled:
        """Match the ledger to an answer that said *used* units were in use when its
        request (sent at *sent*) was counted. Units sent more than *jitter* before it were
        counted before it; if fewer are in use, the oldest are back. Only a *fresh*
        answer (no newer one reconciled yet) may show usage we never sent: an older one
        may predate returns that a newer one already showed."""
        stamps, units = self._stamps, self._units
        first_near = bisect.bisect_left(stamps, sent - jitter)
        after_near = bisect.bisect_right(stamps, sent + jitter)
        old = sum(units[:first_near])
        near = sum(units[first_near:after_near])
        room = max(used - (1 if counted_itself else 0), 0)  # old units it can still hold
        popped, popped_newest, split = 0, None, 0
        if old > room:
            popped = old - room
            popped_newest = self._pop(popped)
            old = room
            if popped_newest is not None:
                # The rest of that group is seen still counted only as far as the answer
                # proves it: units sent near this one may explain the count instead (a
                # fixed window's new burst, all of the old ones back).
                unproven = old - min(max(used - near, 0), old)
                split = max(self._group(popped_newest, jitter) - unproven, 0)
        foreign = 0
        if fresh and old + near < used:
            foreign = used - old - near
            self.add(sent, foreign)
        held = proven = None
        if old > 0 and old <= used - near:
            held = stamps[0]  # even if every near unit was counted, all old ones were
        if old > 0 and used > near:
            # Of the old units, the newest used - near were counted whatever the near ones
            # did: the oldest of those. An older one may be kept only because near units
            # have not shown it back yet.
            proven = self.nth_stamp(old - min(used - near, old) + 1)
        return Reconciled(popped, popped_newest, split, held, proven, foreign)

    # -- state ------------------------------------------------------------------------
    def entries(self) -> list[list[float]]:
        return [[s, float(u)] for s, u in zip(self._stamps, self._units, strict=True)]

    def restore(
        self, entries: Iterable[Iterable[float]], in_flight: Iterable[Iterable[float]]
    ) -> None:
        for stamp, units in entries:
            self.add(float(stamp), int(units))
        for seq, sent in in_flight:
            self.in_flight[int(seq)] = float(sent)
            self._seq = max(self._seq, int(seq))

    @property
    def seq(self) -> int:
        return self._seq

    @seq.setter
    def seq(self, value: int) -> None:
        self._seq = max(self._seq, value)

    # -- internals --------------------------------------------------------------------
    def _pop(self, n: int) -> float | None:
        """Take the *n* oldest units; the stamp of the newest taken."""
        newest = None
        while n > 0 and self._stamps:
            newest = self._stamps[0]
            taken = min(n, self._units[0])
            self._take(0, taken)
            n -= taken
        return newest

    def _take(self, at: int, n: int) -> None:
        self._units[at] -= n
        self.counted -= n
        if self._units[at] <= 0:
            del self._stamps[at]
            del self._units[at]

    def _group(self, stamp: float, jitter: float) -> int:
        """Units still in the ledger sent within *jitter* of *stamp*."""
        stamps = self._stamps
        end = bisect.bisect_right(stamps, stamp + jitter)
        return sum(self._units[:end])
