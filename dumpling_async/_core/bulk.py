"""The bulk engine behind ``gather_profiles`` / ``iter_profiles`` and the video and
transcript helpers.

Input is consumed lazily, at most ``concurrency`` lookups run at once, and each unique
normalised input (handle, canonical video URL) is requested once: repeats wait for (or
reuse) its outcome. Memory is O(concurrency) plus a set of the keys seen. An
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
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable
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
from .endpoints import PROFILE, TRANSCRIPT, VIDEO, Call
from .fate import stops_batch
from .inputs import normalize_handle, normalize_video_url
from .lookups import Lookups
from .source import Source

__all__ = ["PROFILES", "VIDEOS", "BulkKind", "gather_results", "iter_results", "transcripts"]

R = TypeVar("R", bound=BulkResult[Any])

# Outcomes kept for repeats that arrive after their key finished; beyond this a repeat
# gets DuplicateHandleError (never a second request).
_RECENT_OUTCOMES = 512

Outcome = Any  # a model, or the DumplingError the lookup ended with


@attrs.frozen
class BulkKind(Generic[R]):
    """What a bulk run looks up: how an input becomes its key and its request, and
    which result class reports it."""

    normalize: Callable[[object], str]
    call: Callable[[str], Call]
    result: type[R]


PROFILES: BulkKind[ProfileResult] = BulkKind(normalize_handle, PROFILE.call, ProfileResult)
VIDEOS: BulkKind[VideoResult] = BulkKind(normalize_video_url, VIDEO.call, VideoResult)


def transcripts(language: str) -> BulkKind[TranscriptResult]:
    def call(url: str) -> Call:
        return TRANSCRIPT.call(url, preferredLanguage=language)

    return BulkKind(normalize_video_url, call, TranscriptResult)


class _Run(Generic[R]):
    """State of one bulk run: the keys seen, the positions waiting for each, the
    lookups in flight and the results ready to yield."""

    def __init__(self, lookups: Lookups, kind: BulkKind[R], width: int, *, keep_all: bool) -> None:
        self.lookups = lookups
        self.flights = lookups.flights
        self.kind = kind
        self.width = width
        self.keep_all = keep_all
        self.abort: DumplingError | None = None
        self.waiting: dict[str, list[tuple[int, object]]] = {}  # key -> positions
        self.first_index: dict[str, int] = {}  # every key seen: the dedupe set
        self.kept: OrderedDict[str, Outcome] = OrderedDict()
        self.ready: deque[R] = deque()
        self.tasks: dict[asyncio.Task[Outcome], Call] = {}
        # Finished lookups arrive here through done-callbacks: O(1) per completion,
        # where asyncio.wait() would re-scan every task in flight each time.
        self.finished: deque[asyncio.Task[Outcome]] = deque()
        self.wake = asyncio.Event()
        self.source: Source | None = None
        self.index = 0
        self.parked = 0  # repeats waiting for their key's lookup

    # -- the batch's stop -------------------------------------------------------------
    def stop_reason(self) -> DumplingError | None:
        if self.abort is None:
            return None
        return BatchAbortedError(f"batch stopped: {self.abort}", cause=self.abort)

    def stamp(self, error: DumplingError, key: str) -> DumplingError:
        """Name the input on an error made for the whole batch."""
        error.target = key
        error.handle = self.kind.call(key).handle
        return error

    # -- input ------------------------------------------------------------------------
    def has_room(self) -> bool:
        """Read more input only while lookups and results stay within the window."""
        width = self.width
        return len(self.tasks) < width and len(self.ready) + self.parked < width

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
        elif key in self.first_index:
            self.ready.append(result(position, given, key, self.repeat_outcome(key)))
        elif self.abort is not None:
            reason = self.stop_reason()
            assert reason is not None
            self.ready.append(result(position, given, key, self.stamp(reason, key)))
        else:
            self.first_index[key] = position
            self.waiting[key] = [(position, given)]
            self.start(self.kind.call(key))

    def repeat_outcome(self, key: str) -> Outcome:
        outcome = self.kept.get(key)
        if outcome is not None:
            return outcome
        first = self.first_index[key]
        message = f"{key!r} was answered at position {first}"
        return self.stamp(DuplicateHandleError(message, first_index=first), key)

    # -- lookups ----------------------------------------------------------------------
    def start(self, call: Call) -> None:
        joined = self.flights.running(call.key)
        task = asyncio.ensure_future(self.outcome(call, joined))
        if not joined:  # other calls for it join this task (single flight)
            self.flights.adopt(call.key, task)
        task.add_done_callback(self.on_done)
        self.tasks[task] = call

    def on_done(self, task: asyncio.Task[Outcome]) -> None:
        self.finished.append(task)
        self.wake.set()

    async def outcome(self, call: Call, join: bool) -> Outcome:
        """The value of *call*, or the DumplingError it ended with (never raised)."""
        try:
            if join:
                return await self.lookups.get(call)
            return await self.lookups.fetch(call, self.stop_reason)
        except BatchAbortedError as error:
            return self.stamp(error, call.subject)
        except DumplingError as error:
            if stops_batch(error) and self.abort is None:
                self.abort = error
            return error
        except Exception as exc:
            # A bug or a failing plug-in (limiter, budget) must not lose the batch:
            # this key ends with a typed error that carries the cause.
            unexpected = DumplingError(f"unexpected {type(exc).__name__}: {exc}")
            unexpected.__cause__ = exc
            return self.stamp(unexpected, call.subject)

    def collect(self) -> None:
        """Turn each finished lookup into the results of the positions waiting for it."""
        result = self.kind.result.of
        while self.finished:
            task = self.finished.popleft()
            key = self.tasks.pop(task).subject
            if task.cancelled():  # aclose() stopped the client's lookups
                outcome = self.stamp(ClientClosedError("the client was closed"), key)
            else:
                outcome = task.result()
            self.kept[key] = outcome
            if not self.keep_all and len(self.kept) > _RECENT_OUTCOMES:
                self.kept.popitem(last=False)
            positions = self.waiting.pop(key)
            self.parked -= len(positions) - 1
            for position, given in positions:
                self.ready.append(result(position, given, key, outcome))

    # -- the run ----------------------------------------------------------------------
    async def results(
        self, items: Iterable[object] | AsyncIterable[object], on_result: Callable[[R], None] | None
    ) -> AsyncGenerator[R, None]:
        """Yield one result per input position, in completion order."""
        if self.width < 1:
            raise ValueError("concurrency must be >= 1")
        self.flights.check_open()
        source = self.source = Source(items, self.wake.set)
        failure: BaseException | None = None  # raised by on_result
        try:
            while True:
                while self.ready:
                    result = self.ready.popleft()
                    if on_result is not None and failure is None:
                        try:
                            on_result(result)
                        except Exception as exc:  # deliver what is paid for, then raise
                            failure = exc
                    yield result
                while failure is None and self.has_room():
                    got, given = source.take()
                    if not got:
                        break  # none yet (an async item on its way: it wakes us), or no more
                    self.admit(given)
                if self.ready:
                    continue
                if not self.tasks and (failure is not None or source.ended):
                    if failure is not None or source.error is not None:
                        raise failure or source.error  # type: ignore[misc]
                    return
                if not self.finished:
                    self.wake.clear()
                    await self.wake.wait()  # a lookup finished, or an input item arrived
                self.collect()
        finally:
            await self.stop()
            await source.aclose()

    async def stop(self) -> None:
        """Cancel the lookups in flight that no other caller awaits, and wait for them."""
        cancelled = []
        for task, call in self.tasks.items():
            task.remove_done_callback(self.on_done)
            if not self.flights.disown(call.key, task):
                task.cancel()
                cancelled.append(task)
        if cancelled:
            await asyncio.gather(*cancelled, return_exceptions=True)


def iter_results(
    lookups: Lookups,
    kind: BulkKind[R],
    items: Iterable[object] | AsyncIterable[object],
    *,
    concurrency: int,
    on_result: Callable[[R], None] | None = None,
) -> AsyncGenerator[R, None]:
    """Yield one result per input position, in completion order."""
    return _Run(lookups, kind, concurrency, keep_all=False).results(items, on_result)


async def gather_results(
    lookups: Lookups,
    kind: BulkKind[R],
    items: Iterable[object] | AsyncIterable[object],
    *,
    concurrency: int,
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
