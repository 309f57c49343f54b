"""What one answer says of the quota (``ResponseInfo``, read from its headers by
``headers.response_info``), and what the server said about when units come back
(``Word``: its latest promise, a ``Cap``, and whether its resets and waits can be taken
as said)."""

from __future__ import annotations

import attrs

from .tuning import Tuning

__all__ = ["Cap", "Lag", "ResponseInfo", "Word"]


@attrs.frozen(kw_only=True)
class ResponseInfo:
    """What the limiter needs to know of a response (all header values already parsed
    and bounded; None when absent or unusable)."""

    status: int
    limit: int | None
    remaining: int | None
    retry_after: float | None = None
    retry_after_rounded: bool = False  # whole seconds: the true wait is within 1 s of it
    reset: float | None = None  # seconds until used quota comes back, as the server says
    reset_rounded: bool = False  # whole seconds: the reset may come up to 1 s sooner
    window: float | None = None  # the server's own window (RateLimit-Policy w=)
    # The reset was a time of day (a Unix time), so it counts from when the answer was
    # read, not from when the request was counted.
    reset_absolute: bool = False
    # How long after its permit the request left this client, less the longest spell in
    # that wait when no other request left (0: not measured, or the whole client was
    # held): a busy loop that serves some requests while it holds others sends unevenly.
    sent_late: float = 0.0


@attrs.define
class Cap:
    """What a server said: of the units sent at or before ``upto``, the ``most`` oldest
    are back at ``at`` ("the next unit is back then" frees one)."""

    upto: float
    at: float
    most: int
    from_reset: bool  # a reset header (which can over-promise) rather than Retry-After


@attrs.define
class Word:
    """What a server said about when units come back, and how far to take it."""

    cap: Cap | None = None
    reset_trusted: bool = True  # until a reset over-promises once
    floors: bool = False  # the server rounds Retry-After down (it sent a 0)

    def keep(self, cap: Cap) -> None:
        """Keep the promise that frees more, sooner (answers arrive in any order)."""
        old = self.cap
        if old is not None and old.at <= cap.at and old.most >= cap.most:
            return
        self.cap = cap

    def refused(self, sent: float, wait: float | None, rounded: bool) -> None:
        """A request sent at *sent* was refused: a reset that promised quota by then
        over-promised (and is not taken again); a whole-second wait of 0 is rounded down."""
        cap = self.cap
        if cap is not None and cap.from_reset and sent >= cap.at:
            self.reset_trusted, self.cap = False, None
        if wait == 0 and rounded:
            self.floors = True

    def late_end(self, wait: float) -> float:
        """The latest a whole-second wait can mean (rounded up, unless the server was seen
        rounding down)."""
        return wait + 1.0 if self.floors else wait

    def early_end(self, wait: float) -> float:
        """The earliest a whole-second wait can mean."""
        return wait if self.floors else max(wait - 1.0, 0.0)


@attrs.define
class Lag:
    """How far apart two requests granted together may leave this client: each one's
    ``sent_late`` (its wait less the spells when nothing else left, ``departures``; a
    busy loop holds some longer than others), less the smallest seen lately that was
    not 0. The largest spread seen, halving every ``lag_half_life`` seconds; a lone
    request after a quiet spell sets the floor afresh, not the spread."""

    value: float = 0.0
    at: float = 0.0
    floor: float = 0.0
    floor_at: float = -1e18

    def observe(self, late: float, now: float, tuning: Tuning) -> None:
        late, half_life = min(max(late, 0.0), tuning.lag_most), tuning.lag_half_life
        if late < self.floor or now - self.floor_at > half_life:
            self.floor, self.floor_at = late, now
        decayed = self.value * 0.5 ** (max(now - self.at, 0.0) / half_life)
        self.value, self.at = max(late - self.floor, decayed), now
