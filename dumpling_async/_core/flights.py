"""Single flight: concurrent requests for the same thing share one request and one charge.

A single call starts a task per key and every concurrent caller awaits it. A bulk job
registers its own task instead (:meth:`Flights.adopt`), so the common case costs no
extra task; single calls that overlap a bulk job join its task.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .._errors import BatchAbortedError, ClientClosedError, DumplingError

__all__ = ["Flights", "Key"]

T = TypeVar("T")
Key = tuple[str, str]  # see Call.key


class _Flight:
    """One lookup in progress and how many callers await it.

    An *owned* lookup is a bulk job's task: it runs as long as the job wants it, whoever
    else joins or leaves; when the job stops, callers that joined it keep it running.
    """

    __slots__ = ("outcomes", "owned", "task", "waiters")

    def __init__(
        self, task: asyncio.Task[Any], *, owned: bool = False, outcomes: bool = False
    ) -> None:
        self.task = task
        self.waiters = 0
        self.owned = owned
        self.outcomes = outcomes  # the task returns its DumplingError instead of raising


class Flights:
    """The lookups of one client in progress, by key."""

    def __init__(self) -> None:
        self._flights: dict[Key, _Flight] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"Flights(in_flight={len(self._flights)}, closed={self._closed})"

    def check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("this AsyncDumplingClient is closed; create a new one")

    async def share(self, key: Key, start: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run *start* once for concurrent callers with the same *key*."""
        while True:
            self.check_open()
            flight = self._flights.get(key)
            if flight is None:
                flight = _Flight(asyncio.ensure_future(start()))
                self._flights[key] = flight
                flight.task.add_done_callback(functools.partial(self._landed, key, flight))
            flight.waiters += 1
            try:
                result = await asyncio.shield(flight.task)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if not flight.task.cancelled() or current is None or current.cancelling():
                    raise  # this caller was cancelled
                if self._closed:
                    raise ClientClosedError("the client was closed during the lookup") from None
                continue  # the bulk job that owned the lookup stopped: start afresh
            finally:
                flight.waiters -= 1
                if flight.waiters == 0 and not flight.owned and not flight.task.done():
                    # Every caller gave up: stop paying for it, and let a new caller start
                    # afresh rather than join a lookup that is being cancelled.
                    self._land(key, flight)
                    flight.task.cancel()
            if flight.outcomes and isinstance(result, DumplingError):
                if isinstance(result, BatchAbortedError):
                    continue  # the batch's own stop, not this caller's: ask afresh
                raise result  # a bulk task returns its error as its outcome
            value: T = result
            return value

    def running(self, key: Key) -> bool:
        """True when a lookup of *key* is in flight (a new one would join it)."""
        return key in self._flights

    def adopt(self, key: Key, task: asyncio.Task[Any]) -> None:
        """Register a bulk job's *task* as the lookup of *key* (none is in flight).

        The task returns a value or a DumplingError; callers that join it get the same.
        """
        assert key not in self._flights
        flight = self._flights[key] = _Flight(task, owned=True, outcomes=True)
        task.add_done_callback(functools.partial(self._landed, key, flight))

    def disown(self, key: Key, task: asyncio.Task[Any]) -> bool:
        """A bulk job no longer wants *task*: True if other callers still await it (it
        runs on for them, since it may already be paid for), False to cancel it."""
        flight = self._flights.get(key)
        if flight is None or flight.task is not task or flight.waiters == 0:
            return False
        flight.owned = False  # from now on its waiters decide, as for a single call
        return True

    async def aclose(self) -> None:
        """Refuse new lookups; cancel those in flight and wait for their cleanup (limiter
        and budget) to finish."""
        self._closed = True
        tasks = [flight.task for flight in self._flights.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _land(self, key: Key, flight: _Flight) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]

    def _landed(self, key: Key, flight: _Flight, _: object) -> None:
        self._land(key, flight)
