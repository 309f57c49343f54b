"""The quota model's states: what it knows of the server, and so what may go. The
transitions between them are all in ``QuotaModel._advance`` (``quota.py``)."""

from __future__ import annotations

import enum

__all__ = ["Mode"]


class Mode(enum.Enum):
    """What the model knows of the server, and so what may go.

    - ``STARTING``: nothing; one request at a time until an answer says whether the
      server meters this key at all.
    - ``UNMETERED``: the answers carry no limit: nothing waits.
    - ``CLOSED``: ``Limit: 0``: one probe at a time, ever further apart.
    - ``LEARNING``: the limit, not when used units come back: what the server confirmed
      goes at once, then one probe at a time, soon after the quota ran out (its 429's
      Retry-After usually says the window) and ever further apart; a group seen back in
      part is looked at again once that can prove the server gradual.
    - ``CONFIRMING``: a window was inferred; what is confirmed goes, and one request on
      the window's prediction (the trial) until an answer shows a whole group back on
      time. A wrong window (a fixed window's phase read as its length) then costs one
      429, not a burst for each window in flight.
    - ``STEPS``: units come back a window after they were counted (a sliding log; a
      fixed window returns them no later): every unit the window says is back goes at
      once; while the window is only bracketed, one unit of each burst tests its middle.
      A window shorter than the last trial's by more than ``Tuning.reconfirm`` goes back
      to ``CONFIRMING``; the smaller trims of a steady run's answers do not.
    - ``GRADUAL``: units come back at a steady rate (token bucket, GCRA, a sliding
      window counter): requests are paced at the rate measured from the answers.

    Over every state, a 429 or 503 pauses everyone (``paused_until``).
    """

    STARTING = "starting"
    UNMETERED = "unmetered"
    CLOSED = "closed"
    LEARNING = "learning"
    CONFIRMING = "confirming"
    STEPS = "steps"
    GRADUAL = "gradual"
