"""The bulk engine behind ``gather_profiles`` / ``iter_profiles`` and the video and
transcript helpers.

Input is consumed lazily, at most ``concurrency`` lookups run at once, and each unique
normalised input (handle, canonical video URL) is requested once: repeats wait for (or
reuse) its outcome. Memory is O(concurrency) plus about 25 bytes per distinct key seen
(:class:`~.seen.SeenKeys`: a digest and a position, not the key). An
account-level error (401, 403) stops new requests at once; positions not attempted get
``BatchAbortedError``. What differs between profiles, videos and transcripts is a
:class:`BulkKind`.

Results are paid for, so none is dropped: when the input raises or ``on_result`` does,
no further input is read, the lookups already sent finish, every result produced reaches
the caller (``iter_*`` yields them, ``gather_*`` raises :class:`InputFailedError` holding
them), and then the failure is raised.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

import attrs

from .._errors import (
    BatchAbortedError,
    ClientClosedError,
    DumplingError,
    DuplicateHandleError,
    InputFailedError,
    InvalidInputError,
)
from .._results import BulkResult, ProfileResult, TranscriptResult, VideoResult
from .endpoints import PROFILE, TRANSCRIPT, VIDEO, Call, Endpoint
from .fate import stops_batch
from .inputs import normalize_handle, normalize_video_url
from .lookups import Lookups
from .seen import SeenKeys
from .source import Source
from .turns import BULK, Turn

__all__ = ["PROFILES", "VIDEOS", "BulkKind", "gather_results", "iter_results", "transcripts"]

R = TypeVar("R", bound=BulkResult[Any])

# Outcomes kept for repeats that arrive after their key finished; beyond this a repeat
# gets DuplicateHandleError (never a second request).
_RECENT_OUTCOMES = 512

Outcome = Any  # a model, or the DumplingError the lookup ended with
Width = int | Callable[[], int]  # a fixed number, or read again each time


@attrs.frozen
class BulkKind(Generic[R]):
    """What a bulk run looks up: how an input becomes its key and its request, and
    which result class reports it."""

    normalize: Callable[[object], str]
    endpoint: Endpoint
    result: type[R]
    extra: Mapping[str, Any] = attrs.field(factory=dict)  # body fields beside the subject
    turn: Turn = BULK  # bulk work waits behind interactive calls unless told otherwise

    def call(self, key: str) -> Call:
        return self.endpoint.call(key, turn=self.turn, **self.extra)


PROFILES: BulkKind[ProfileResult] = BulkKind(normalize_handle, PROFILE, ProfileResult)
VIDEOS: BulkKind[VideoResult] = BulkKind(normalize_video_url, VIDEO, VideoResult)


def transcripts(language: str) -> BulkKind[TranscriptResult]:
    return BulkKind(
        normalize_video_url, TRANSCRIPT, TranscriptResult, {"preferredLanguage": language}
    )


class _Run(Generic[R]):
    """State of one bulk run: the keys seen, the positions waiting for each, the
    lookups in flight and the results ready to yield."""

    def __init__(
        self,
        lookups: Lookups,
        kind: BulkKind[R],
        width: Width,
        *,
        keep_all: bool,
        before_send: Callable[[str], None] | None = None,
    ) -> None:
        self.lookups = lookups
        self.before_send = before_send
        self.flights = lookups.flights
        self.kind = kind
        self._width = width
        self.keep_all = keep_all
        self.abort: DumplingError | None = None
        self.waiting: dict[str, list[tuple[int, object]]] = {}  # key -> positions
        self.seen = SeenKeys()  # every key seen, with its first position: the dedupe set
        self.kept: OrderedDict[str, Outcome] = OrderedDict()
        self.ready: deque[R] = deque()
        # Lookups run on at most `width` worker tasks, not a task each: a worker that
        # finishes one reads the next input and sends it at once, as a hand-written
        # loop of workers would; a task per lookup costs its creation, a turn of the loop
        # to start, a done-callback, and garbage-collector passes over all of them.
        self.queue: deque[Call] = deque()  # admitted, not yet taken by a worker
        self.workers: dict[asyncio.Task[None], Call | None] = {}  # -> the call it runs
        self.idle: deque[asyncio.Future[None]] = deque()  # parked workers' wake-ups
        self.pending = 0  # lookups admitted and not finished (queued or running)
        self.stopping = False
        self.failure: BaseException | None = None  # raised by on_result
        self.wake = asyncio.Event()  # a result is ready, or an async input item arrived
        self.loop: asyncio.AbstractEventLoop | None = None  # the running loop, once started
        self.source: Source | None = None
        self.index = 0
        self.parked = 0  # repeats waiting for their key's lookup

    @property
    def width(self) -> int:
        """Lookups in flight at most: the caller's number, or the client's slots now (a
        retry then never queues behind lookups the run admitted meanwhile)."""
        width = self._width
        return width if isinstance(width, int) else width()

    # -- the batch's stop -------------------------------------------------------------
    def stop_reason(self) -> DumplingError | None:
        if self.abort is None:
            return None
        return BatchAbortedError(f"batch stopped: {self.abort}", cause=self.abort)

    def recorder(self, call: Call) -> Callable[[], DumplingError | None]:
        """What the pipeline asks the moment before each attempt of *call* is sent:
        ``before_send``, which must have recorded the key when it returns. If it raises,
        the attempt is not sent and the batch stops (a write-ahead record that cannot be
        written must not let requests go unrecorded)."""
        before_send = self.before_send
        assert before_send is not None

        def check() -> DumplingError | None:
            try:
                before_send(call.subject)
            except Exception as exc:
                error = DumplingError(f"before_send failed: {type(exc).__name__}: {exc}")
                error.__cause__ = exc
                if self.abort is None:
                    self.abort = error
                return self.stop_reason()
            return None

        return check

    def stamp(self, error: DumplingError, key: str) -> DumplingError:
        """Name the input on an error made for the whole batch."""
        return self.kind.endpoint.identify(error, key)

    # -- input ------------------------------------------------------------------------
    def has_room(self) -> bool:
        """Read more input only while lookups and results stay within the window."""
        width = self.width
        return self.pending < width and len(self.ready) + self.parked < width

    def fill(self) -> None:
        """Admit input while there is room (from the consumer, or from a worker that
        just finished a lookup)."""
        source = self.source
        assert source is not None
        while self.failure is None and not self.stopping and self.has_room():
            got, given = source.take()
            if not got:
                break  # none yet (an async item on its way: it wakes us), or no more
            self.admit(given)

    def admit(self, given: object) -> None:
        """Take one input item: a result at once (invalid, repeat, batch stopped), a
        position parked behind its key's lookup, or a new lookup."""
        position, self.index = self.index, self.index + 1
        result = self.kind.result.of
        try:
            key = self.kind.normalize(given)
        except InvalidInputError as error:
            self.ready.append(result(position, given, str(given)[:200], error))
            return
        if key in self.waiting:
            self.waiting[key].append((position, given))
            self.parked += 1
        elif (first := self.seen.get(key)) is not None:
            outcome = self.repeat_outcome(key, first)
            self.ready.append(result(position, given, key, outcome, first))
        elif self.abort is not None:
            reason = self.stop_reason()
            assert reason is not None
            outcome = self.stamp(reason, key)
            self.seen.add(key, position)  # its repeats name this position, as any repeat
            self.keep(key, outcome)
            self.ready.append(result(position, given, key, outcome))
        else:
            self.seen.add(key, position)
            self.waiting[key] = [(position, given)]
            self.pending += 1
            self.queue.append(self.kind.call(key))

    def repeat_outcome(self, key: str, first: int) -> Outcome:
        outcome = self.kept.get(key)
        if outcome is not None:
            return outcome
        message = f"{key!r} was answered at position {first}"
        return self.stamp(DuplicateHandleError(message, first_index=first), key)

    # -- lookups ----------------------------------------------------------------------
    def dispatch(self, taking: int) -> None:
        """Make sure a worker will take each queued call: *taking* of them are taken by
        the worker calling this; wake parked workers, then start new ones, for the rest.
        (A worker woken for a call another one took parks again: harmless.)"""
        need = len(self.queue) - taking
        idle = self.idle
        while need > 0 and idle:
            waiter = idle.popleft()
            if not waiter.done():  # a worker cancelled while parked left its future
                waiter.set_result(None)
                need -= 1
        assert self.loop is not None
        while need > 0 and len(self.workers) < self.width:
            worker = self.loop.create_task(self.work())
            self.workers[worker] = None
            worker.add_done_callback(self.worker_done)
            need -= 1

    async def work(self) -> None:
        """A worker: take queued calls one after the other, then park until more come.
        It ends when cancelled (the run stopped, or the client closed), or, when the run
        stopped while a single call awaited its lookup, once that lookup is done."""
        me = asyncio.current_task()
        assert me is not None and self.loop is not None
        while True:
            if not self.queue:
                waiter = self.loop.create_future()
                self.idle.append(waiter)
                await waiter
                continue
            call = self.queue.popleft()
            self.workers[me] = call
            outcome = await self.lookup(call, me)
            self.workers[me] = None
            if self.stopping:
                return  # it ran on for a single call that had joined it: done
            self.finish(call, outcome)
            self.fill()
            self.dispatch(1)

    def worker_done(self, worker: asyncio.Task[None]) -> None:
        """A worker ended: when cancelled mid-lookup while the run goes on (the client
        was closed), its position ends with ClientClosedError; queued calls get a new
        worker."""
        call = self.workers.pop(worker, None)
        if self.stopping:
            return
        if call is not None:
            self.finish(call, self.stamp(ClientClosedError("the client was closed"), call.subject))
        self.dispatch(0)

    async def lookup(self, call: Call, me: asyncio.Task[None]) -> Outcome:
        """The value of *call*, or the DumplingError it ended with (never raised). A new
        key becomes the flight that other callers join; a key in flight is joined."""
        flights, key = self.flights, call.key
        if flights.closed:
            return self.stamp(ClientClosedError("the client was closed"), call.subject)
        if flights.running(key):
            try:
                return await self.lookups.get(call)
            except Exception as exc:
                return self.failed(exc, call)
        flights.adopt(key, me)
        at_send = self.recorder(call) if self.before_send is not None else None
        try:
            outcome = await self.lookups.fetch(call, self.stop_reason, at_send)
        except Exception as exc:
            outcome = self.failed(exc, call)
        except BaseException:
            flights.settle(key, me, None, aborted=True)
            raise
        flights.settle(key, me, outcome)
        return outcome

    def failed(self, exc: Exception, call: Call) -> DumplingError:
        """The outcome of a lookup that raised *exc* (the pipeline named the call on its
        own errors)."""
        if isinstance(exc, DumplingError):
            if stops_batch(exc) and self.abort is None:
                self.abort = exc
            return exc
        # A bug or a failing plug-in (limiter, budget) must not lose the batch: this key
        # ends with a typed error that carries the cause.
        unexpected = DumplingError(f"unexpected {type(exc).__name__}: {exc}")
        unexpected.__cause__ = exc
        return self.stamp(unexpected, call.subject)

    def keep(self, key: str, outcome: Outcome) -> None:
        """Keep *key*'s outcome for its repeats (the last ``_RECENT_OUTCOMES`` only,
        unless every one is kept)."""
        self.kept[key] = outcome
        if not self.keep_all and len(self.kept) > _RECENT_OUTCOMES:
            self.kept.popitem(last=False)

    def finish(self, call: Call, outcome: Outcome) -> None:
        """Turn a finished lookup into the results of the positions waiting for it."""
        self.pending -= 1
        key = call.subject
        self.keep(key, outcome)
        positions = self.waiting.pop(key)
        self.parked -= len(positions) - 1
        result = self.kind.result.of
        first = positions[0][0]  # the position that looked it up; the rest repeat it
        for position, given in positions:
            repeat_of = None if position == first else first
            self.ready.append(result(position, given, key, outcome, repeat_of))
        self.wake.set()

    # -- the run ----------------------------------------------------------------------
    async def results(
        self, items: Iterable[object] | AsyncIterable[object], on_result: Callable[[R], None] | None
    ) -> AsyncGenerator[R, None]:
        """Yield one result per input position, in completion order."""
        if self.width < 1:
            raise ValueError("concurrency must be >= 1")
        self.flights.check_open()
        self.loop = asyncio.get_running_loop()
        source = self.source = Source(items, self.wake.set)
        try:
            while True:
                while self.ready:
                    result = self.ready.popleft()
                    if on_result is not None and self.failure is None:
                        try:
                            on_result(result)
                        except Exception as exc:  # deliver what is paid for, then raise
                            self.failure = exc
                    yield result
                self.fill()
                self.dispatch(0)
                if self.ready:
                    continue
                if not self.pending and (self.failure is not None or source.ended):
                    if self.failure is not None or source.error is not None:
                        raise self.failure or source.error  # type: ignore[misc]
                    return
                self.wake.clear()
                await self.wake.wait()  # a lookup finished, or an input item arrived
        finally:
            await self.stop()
            await source.aclose()

    async def stop(self) -> None:
        """End the workers, and with them the lookups in flight, except a lookup that a
        single call joined: that one runs on for it (it may already be paid for)."""
        self.stopping = True
        cancelled = []
        for worker, call in self.workers.items():
            if call is not None and self.flights.release(call.key, worker):
                continue
            worker.cancel()
            cancelled.append(worker)
        if cancelled:
            await asyncio.gather(*cancelled, return_exceptions=True)


def iter_results(
    lookups: Lookups,
    kind: BulkKind[R],
    items: Iterable[object] | AsyncIterable[object],
    *,
    concurrency: Width,
    on_result: Callable[[R], None] | None = None,
    before_send: Callable[[str], None] | None = None,
) -> AsyncGenerator[R, None]:
    """Yield one result per input position, in completion order."""
    run = _Run(lookups, kind, concurrency, keep_all=False, before_send=before_send)
    return run.results(items, on_result)


async def gather_results(
    lookups: Lookups,
    kind: BulkKind[R],
    items: Iterable[object] | AsyncIterable[object],
    *,
    concurrency: Width,
) -> list[R]:
    """All results, in input order; repeats share their key's outcome."""
    run = _Run(lookups, kind, concurrency, keep_all=True)
    results: list[R | None] = []
    try:
        async for result in run.results(items, None):
            index = result.index
            if index >= len(results):
                results.extend([None] * (index + 1 - len(results)))
            results[index] = result
    except Exception as exc:
        if run.source is None or exc is not run.source.error:
            raise
        done = [r for r in results if r is not None]
        raise InputFailedError(
            f"the input raised {type(exc).__name__} after {len(done)} items; "
            "their results are in .results",
            results=done,
        ) from exc
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]
