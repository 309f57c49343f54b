"""Single flight: concurrent requests for the same thing share one request and one charge.

A single call starts a task per key and every concurrent caller awaits it, each on a
future of its own that the task answers when it ends. A bulk job's worker registers
itself as the lookup instead (:meth:`Flights.adopt`) and answers the callers that join
it (:meth:`Flights.settle`), so a bulk lookup costs no task of its own; single calls
that overlap a bulk job join its lookup.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from .._errors import BatchAbortedError, ClientClosedError, DumplingError

__all__ = ["Flights", "Key"]

T = TypeVar("T")
Key = tuple[str, str]  # see Call.key


class _Flight:
    """One lookup in progress and the callers awaiting it, each on a future of its own
    (a caller that gives up cancels only its own).

    An *owned* lookup is run by a bulk job's worker: it runs as long as the job wants
    it, whoever else joins or leaves; when the job stops, callers that joined it keep it
    running.
    """

    __slots__ = ("aborted", "outcomes", "owned", "task", "waiters")
    task: asyncio.Task[Any]  # set right after the flight is made (its task needs it)

    def __init__(self, *, owned: bool = False, outcomes: bool = False) -> None:
        # A dict, for removal in O(1) and answers in arrival order.
        self.waiters: dict[asyncio.Future[Any], None] = {}
        self.owned = owned
        self.outcomes = outcomes  # a DumplingError outcome is the callers' to raise
        self.aborted = False  # the lookup was cancelled: its callers ask afresh


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
                flight = self._flights[key] = _Flight()
                flight.task = asyncio.get_running_loop().create_task(self._run(key, flight, start))
            waiter = flight.task.get_loop().create_future()
            flight.waiters[waiter] = None
            try:
                result = await waiter
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if not flight.aborted or current is None or current.cancelling():
                    raise  # this caller was cancelled
                if self._closed:
                    raise ClientClosedError("the client was closed during the lookup") from None
                continue  # the bulk job that owned the lookup stopped: start afresh
            finally:
                del flight.waiters[waiter]
                if not flight.waiters and not flight.owned and self._flights.get(key) is flight:
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

    async def _run(self, key: Key, flight: _Flight, start: Callable[[], Awaitable[Any]]) -> None:
        """The lookup of single calls. Its callers are answered from here, not from a
        done-callback of the task, which would cost each answer one more turn of the loop;
        and its error goes to them, so the task itself ends cleanly."""
        try:
            result = await start()
        except Exception as exc:
            self._land(key, flight)
            _answer(flight, error=exc)
        except BaseException:
            self._land(key, flight)
            _answer(flight, aborted=True)
            raise
        else:
            self._land(key, flight)
            _answer(flight, result)

    def running(self, key: Key) -> bool:
        """True when a lookup of *key* is in flight (a new one would join it)."""
        return key in self._flights

    @property
    def closed(self) -> bool:
        return self._closed

    def adopt(self, key: Key, task: asyncio.Task[Any]) -> None:
        """Register a bulk job's worker *task* as running the lookup of *key* (none is in
        flight). The worker answers the callers that join it with :meth:`settle`."""
        assert key not in self._flights
        flight = self._flights[key] = _Flight(owned=True, outcomes=True)
        flight.task = task

    def settle(
        self, key: Key, task: asyncio.Task[Any], outcome: Any, *, aborted: bool = False
    ) -> None:
        """The adopted lookup of *key* by *task* ended with *outcome* (a value, or the
        DumplingError its callers raise), or was cancelled (*aborted*: they ask afresh)."""
        flight = self._flights.get(key)
        if flight is not None and flight.task is task:
            self._land(key, flight)
            _answer(flight, outcome, aborted=aborted)

    def release(self, key: Key, task: asyncio.Task[Any]) -> bool:
        """A bulk job no longer wants the lookup *task* runs: True if other callers still
        await it (it runs on for them, since it may already be paid for), False to
        cancel it."""
        flight = self._flights.get(key)
        if flight is None or flight.task is not task or not flight.waiters:
            return False
        flight.owned = False  # from now on its waiters decide, as for a single call
        return True

    async def aclose(self) -> None:
        """Refuse new lookups; cancel those in flight and wait for their cleanup (limiter
        and budget) to finish."""
        self._closed = True
        flights = list(self._flights.values())
        for flight in flights:
            flight.task.cancel()
        if flights:
            await asyncio.gather(*(flight.task for flight in flights), return_exceptions=True)
        for flight in flights:  # a task cancelled before it ran never answered its callers
            _answer(flight, aborted=True)

    def _land(self, key: Key, flight: _Flight) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]


def _answer(
    flight: _Flight,
    result: Any = None,
    *,
    error: BaseException | None = None,
    aborted: bool = False,
) -> None:
    """Wake every caller of *flight* with *result* or *error*; when the lookup was
    cancelled (*aborted*), with a cancellation that tells them to ask afresh."""
    flight.aborted = aborted
    for waiter in flight.waiters:
        if waiter.done():
            continue
        if aborted:
            waiter.cancel()
        elif error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(result)
