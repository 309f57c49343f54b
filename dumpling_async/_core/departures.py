"""How unevenly this client's requests leave it: the lag the quota model allows for.

The limiter stamps a request when it leaves, so the time it waited before leaving is no
error in its stamp. What can still bring sends to the server out of their stamps' order
is a client that serves some requests while it holds others: a busy event loop working
through a burst, one connection being opened while others are reused. A stall of the
whole client (its loop blocked, the process descheduled, a garbage collection) holds
every request alike and reorders nothing; counted as a lag, one such stall of 0.2 s made
every window look 0.2 s longer for the next half minute.

So a request's lag is its wait less the longest spell in it when no other request left:
one that waited while nothing else left waited for the whole client (lag 0), and one
held through a stall with a burst counts only how far the burst's leaving spread.
"""

from __future__ import annotations

from collections import deque

__all__ = ["Departures"]

_KEPT = 256  # departures remembered: more than the requests a client has in flight at once


class Departures:
    """The times this client's recent requests left (``time.monotonic()``), in order."""

    __slots__ = ("_times",)

    def __init__(self) -> None:
        self._times: deque[float] = deque(maxlen=_KEPT)

    def left(self, at: float) -> None:
        """A request left at *at* (called as it leaves, so the times stay in order)."""
        self._times.append(at)

    def lag(self, started: float, left: float) -> float:
        """How unevenly a request that was ready at *started* and left at *left* was held:
        its wait less the longest spell in it when no other request left (the whole
        client held: a stall, or nothing else to send)."""
        longest, after = 0.0, left
        for at in reversed(self._times):
            if at < started:
                break
            if at < left:
                longest, after = max(longest, after - at), at
        longest = max(longest, after - started)
        return left - started - longest
